//! Image folders of your own, in the layout torchvision's `ImageFolder`
//! and the Hugging Face `imagefolder` builder use: one sub-folder per class
//! holding PNG or JPEG files, optionally under `train/` and `test/`.
//!
//! ```text
//! pets/cat/001.png   pets/dog/001.jpg …                (one split: train)
//! pets/train/cat/…   pets/test/cat/…  …                (both splits)
//! ```

use crate::config::ChannelPolicy;
use crate::dataset::Split;
use crate::error::{Result, TaskError};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One split's decoded images.
#[derive(Clone, Debug, PartialEq)]
pub struct FolderSplit {
    /// `train` or `test`.
    pub split: Split,
    /// `[n, h, w, c]` pixels, row-major.
    pub pixels: Vec<u8>,
    /// Each image's class index (into [`ImageFolder::classes`]).
    pub labels: Vec<u8>,
    /// Each image's file, for messages and predictions.
    pub files: Vec<PathBuf>,
}

/// A decoded image folder.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageFolder {
    /// Class names (the sub-folder names), sorted.
    pub classes: Vec<String>,
    /// Height, width and channels of every image.
    pub shape: (usize, usize, usize),
    /// The splits found (`train` first).
    pub splits: Vec<FolderSplit>,
}

fn corrupt(path: &Path, reason: String) -> TaskError {
    TaskError::Corrupt {
        path: path.to_path_buf(),
        reason,
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TaskError + '_ {
    move |source| TaskError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn subfolders(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && !is_hidden(p))
        .collect();
    out.sort();
    Ok(out)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

fn is_image(path: &Path) -> bool {
    path.extension().is_some_and(|e| {
        matches!(
            e.to_string_lossy().to_ascii_lowercase().as_str(),
            "png" | "jpg" | "jpeg"
        )
    })
}

/// Reads `dir`. With `image_size`, every image is resized to that square
/// side (bilinear); without, all images must share one size. `channels`
/// turns every image into grey or RGB.
pub fn read_image_folder(
    dir: &Path,
    image_size: Option<usize>,
    channels: ChannelPolicy,
) -> Result<ImageFolder> {
    if !dir.is_dir() {
        return Err(io(dir)(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such folder",
        )));
    }
    let (train, test) = (dir.join("train"), dir.join("test"));
    let roots: Vec<(Split, PathBuf)> = if train.is_dir() || test.is_dir() {
        [(Split::Train, train), (Split::Test, test)]
            .into_iter()
            .filter(|(_, p)| p.is_dir())
            .collect()
    } else {
        vec![(Split::Train, dir.to_path_buf())]
    };
    let mut classes = BTreeSet::new();
    for (_, root) in &roots {
        for class in subfolders(root)? {
            classes.insert(
                class
                    .file_name()
                    .expect("a folder name")
                    .to_string_lossy()
                    .to_string(),
            );
        }
    }
    let classes: Vec<String> = classes.into_iter().collect();
    if classes.len() < 2 {
        return Err(corrupt(
            dir,
            format!(
                "found {} class folder(s): an image folder needs one sub-folder per class, at least two",
                classes.len()
            ),
        ));
    }
    if classes.len() > u8::MAX as usize + 1 {
        return Err(corrupt(
            dir,
            format!("{} classes: at most 256 are supported", classes.len()),
        ));
    }
    let mut shape = OneShape::default();
    let mut splits = Vec::new();
    for (split, root) in roots {
        let mut out = FolderSplit {
            split,
            pixels: Vec::new(),
            labels: Vec::new(),
            files: Vec::new(),
        };
        for (label, class) in classes.iter().enumerate() {
            let folder = root.join(class);
            if !folder.is_dir() {
                continue;
            }
            for file in image_files(&folder)? {
                let image = decode(&file, image_size, channels)?;
                shape.check(&file, &image)?;
                out.pixels.extend_from_slice(&image.pixels);
                out.labels.push(label as u8);
                out.files.push(file);
            }
        }
        if out.labels.is_empty() {
            return Err(corrupt(
                &root,
                "holds no PNG or JPEG image in its class folders".into(),
            ));
        }
        splits.push(out);
    }
    let ((h, w, c), _) = shape.first.expect("at least one image");
    Ok(ImageFolder {
        classes,
        shape: (h, w, c),
        splits,
    })
}

/// Reads the PNG and JPEG files directly in `dir` (no class folders) as
/// unlabelled queries, in file-name order: a split whose `labels` is empty.
pub fn read_image_files(
    dir: &Path,
    image_size: Option<usize>,
    channels: ChannelPolicy,
) -> Result<FolderSplit> {
    let files = image_files(dir)?;
    if files.is_empty() {
        return Err(corrupt(
            dir,
            "holds no PNG or JPEG image (and no class folders)".into(),
        ));
    }
    let mut out = FolderSplit {
        split: Split::Test,
        pixels: Vec::new(),
        labels: Vec::new(),
        files: Vec::new(),
    };
    let mut shape = OneShape::default();
    for file in files {
        let image = decode(&file, image_size, channels)?;
        shape.check(&file, &image)?;
        out.pixels.extend_from_slice(&image.pixels);
        out.files.push(file);
    }
    Ok(out)
}

/// The PNG and JPEG files directly in `folder`, in file-name order.
fn image_files(folder: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(io(folder))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_image(p))
        .collect();
    files.sort();
    Ok(files)
}

/// The one `(height, width, channels)` every image of a read must share,
/// with the file that set it (named when another image differs).
#[derive(Default)]
struct OneShape {
    first: Option<((usize, usize, usize), PathBuf)>,
}

impl OneShape {
    fn check(&mut self, file: &Path, image: &Decoded) -> Result<()> {
        let this = (image.height, image.width, image.channels);
        match &self.first {
            None => self.first = Some((this, file.to_path_buf())),
            Some((first, first_file)) if *first != this => {
                return Err(corrupt(
                    file,
                    format!(
                        "is {}×{}, but {} is {}×{}: images of mixed sizes need --image-size",
                        this.0,
                        this.1,
                        first_file.display(),
                        first.0,
                        first.1
                    ),
                ))
            }
            Some(_) => {}
        }
        Ok(())
    }
}

struct Decoded {
    height: usize,
    width: usize,
    channels: usize,
    pixels: Vec<u8>,
}

fn decode(file: &Path, image_size: Option<usize>, channels: ChannelPolicy) -> Result<Decoded> {
    let bytes = std::fs::read(file).map_err(io(file))?;
    let mut image = image::load_from_memory(&bytes)
        .map_err(|e| corrupt(file, format!("is not a readable PNG or JPEG image: {e}")))?;
    if let Some(side) = image_size {
        image = image.resize_exact(
            side as u32,
            side as u32,
            image::imageops::FilterType::Triangle,
        );
    }
    let (width, height) = (image.width() as usize, image.height() as usize);
    let (pixels, channels) = match channels {
        ChannelPolicy::Gray => (image.into_luma8().into_raw(), 1),
        ChannelPolicy::Rgb => (image.into_rgb8().into_raw(), 3),
    };
    Ok(Decoded {
        height,
        width,
        channels,
        pixels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl_testing::absent_path;

    fn write_png(path: &Path, w: u32, h: u32, value: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::GrayImage::from_pixel(w, h, image::Luma([value]))
            .save(path)
            .unwrap();
    }

    #[test]
    fn class_folders_become_sorted_labels_with_optional_splits() {
        let dir = absent_path("splits");
        write_png(&dir.join("train/dog/a.png"), 4, 3, 10);
        write_png(&dir.join("train/cat/a.png"), 4, 3, 20);
        write_png(&dir.join("train/cat/b.png"), 4, 3, 30);
        write_png(&dir.join("test/dog/c.png"), 4, 3, 40);
        let f = read_image_folder(&dir, None, ChannelPolicy::Gray).unwrap();
        assert_eq!(f.classes, vec!["cat", "dog"]);
        assert_eq!(f.shape, (3, 4, 1));
        assert_eq!(f.splits.len(), 2);
        assert_eq!(f.splits[0].labels, vec![0, 0, 1]);
        assert_eq!(f.splits[0].pixels[0], 20);
        assert_eq!(f.splits[1].split, Split::Test);
        assert_eq!(f.splits[1].labels, vec![1]);
        let rgb = read_image_folder(&dir, Some(2), ChannelPolicy::Rgb).unwrap();
        assert_eq!(rgb.shape, (2, 2, 3));
        assert_eq!(rgb.splits[0].pixels.len(), 3 * 12);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_image_folders_are_refused_naming_the_file() {
        let dir = absent_path("mixed");
        write_png(&dir.join("a/1.png"), 4, 4, 0);
        write_png(&dir.join("b/2.png"), 5, 5, 0);
        let err = read_image_folder(&dir, None, ChannelPolicy::Gray)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2.png") && err.contains("--image-size"),
            "{err}"
        );
        read_image_folder(&dir, Some(4), ChannelPolicy::Gray).expect("resizing mends mixed sizes");
        std::fs::write(dir.join("b/broken.png"), b"not a png").unwrap();
        let err = read_image_folder(&dir, Some(4), ChannelPolicy::Gray)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("broken.png") && err.contains("not a readable"),
            "{err}"
        );
        let one = absent_path("one");
        write_png(&one.join("only/1.png"), 4, 4, 0);
        let err = read_image_folder(&one, None, ChannelPolicy::Gray)
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least two"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&one).unwrap();
    }

    #[test]
    fn a_folder_of_loose_images_reads_as_unlabelled_queries_in_name_order() {
        let dir = absent_path("loose");
        write_png(&dir.join("b.png"), 3, 3, 7);
        write_png(&dir.join("a.png"), 3, 3, 9);
        let split = read_image_files(&dir, None, ChannelPolicy::Gray).unwrap();
        assert!(split.labels.is_empty());
        assert_eq!(split.files, vec![dir.join("a.png"), dir.join("b.png")]);
        assert_eq!((split.pixels[0], split.pixels[9]), (9, 7));
        write_png(&dir.join("c.png"), 4, 4, 0);
        let err = read_image_files(&dir, None, ChannelPolicy::Gray)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.png") && err.contains("a.png") && err.contains("--image-size"),
            "the odd image and the first one are both named: {err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
