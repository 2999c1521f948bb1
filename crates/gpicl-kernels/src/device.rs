//! Choosing where tensors live.

use crate::error::{KernelError, Result};
use candle_core::Device;

/// Parses a device name as given on the command line.
///
/// Accepted: `cpu` (the default everywhere) and `cuda` / `cuda:N`. CUDA is
/// only available in builds with the `cuda` feature; elsewhere asking for it
/// is a clear error rather than a silent fallback to the CPU.
pub fn parse_device(name: &str) -> Result<Device> {
    let trimmed = name.trim().to_ascii_lowercase();
    if trimmed == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match trimmed.as_str() {
        "cuda" => Some(0usize),
        other => other
            .strip_prefix("cuda:")
            .map(|n| {
                n.parse::<usize>().map_err(|_| KernelError::Device {
                    name: name.to_string(),
                    reason: "expected `cuda:N` with N a GPU index".into(),
                })
            })
            .transpose()?,
    };
    match ordinal {
        None => Err(KernelError::Device {
            name: name.to_string(),
            reason: "expected `cpu`, `cuda` or `cuda:N`".into(),
        }),
        Some(ordinal) => cuda_device(name, ordinal),
    }
}

fn cuda_device(name: &str, ordinal: usize) -> Result<Device> {
    if !candle_core::utils::cuda_is_available() {
        return Err(KernelError::Device {
            name: name.to_string(),
            reason: "this build has no CUDA support; rebuild with `--features cuda`".into(),
        });
    }
    #[cfg(feature = "cuda")]
    {
        let missing = crate::cuda::missing_libraries();
        if !missing.is_empty() {
            return Err(KernelError::Device {
                name: name.to_string(),
                reason: format!(
                    "cannot load {} (CUDA 13); put their folder on LD_LIBRARY_PATH (docs/gpu.md)",
                    missing.join(", ")
                ),
            });
        }
    }
    // candle gives every `Device::new_cuda` its own id, stream and cuBLAS
    // handle, and refuses to mix tensors of two ids: hand out one device
    // per GPU for the whole process.
    static OPENED: std::sync::Mutex<Vec<(usize, Device)>> = std::sync::Mutex::new(Vec::new());
    let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, device)) = opened.iter().find(|(o, _)| *o == ordinal) {
        return Ok(device.clone());
    }
    // cudarc panics where a library call is missing from an old driver;
    // report that as an error too.
    match std::panic::catch_unwind(|| Device::new_cuda(ordinal)) {
        Ok(Ok(device)) => {
            opened.push((ordinal, device.clone()));
            Ok(device)
        }
        Ok(Err(e)) => Err(KernelError::Device {
            name: name.to_string(),
            reason: e.to_string(),
        }),
        Err(_) => Err(KernelError::Device {
            name: name.to_string(),
            reason: "the CUDA driver could not be initialised (see the message above)".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_accepted_in_any_case() {
        assert!(parse_device("CPU").unwrap().is_cpu());
    }

    #[test]
    fn unknown_device_names_are_refused_with_the_name() {
        let err = parse_device("tpu").unwrap_err().to_string();
        assert!(err.contains("tpu"), "{err}");
    }

    #[test]
    fn cuda_without_the_feature_is_an_error_not_a_fallback() {
        if !candle_core::utils::cuda_is_available() {
            let err = parse_device("cuda:0").unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
    }

    /// In a CUDA build on a machine without the driver, asking for a GPU
    /// names the missing library instead of panicking inside cudarc.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_without_a_driver_names_the_missing_library() {
        if !crate::cuda::missing_libraries().is_empty() {
            let err = parse_device("cuda").unwrap_err().to_string();
            assert!(err.contains("cannot load"), "{err}");
        }
    }
}
