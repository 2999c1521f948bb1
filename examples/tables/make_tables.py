"""Makes the tables in this folder from data files bundled in PyPI wheels.

    pip download --no-deps -d WHEELS scikit-learn==1.9.1 palmerpenguins==0.1.6 \
        statsmodels==0.15.0 vega_datasets==0.9.0 river==0.26.1
    python examples/tables/make_tables.py WHEELS [FOLDER ...]

reads each data file straight out of its wheel (nothing is installed or
imported but the standard library) and writes FOLDER/train.csv and
FOLDER/test.csv next to this script, for every folder named (default: all).
Each table's rows are shuffled once with `random.Random(0)`; the first 100
are the training pool and the next (at most) 1000 the test rows. Every
class must have at least 3 training rows. Values are copied as written in
the source file unless a table's function says otherwise.
"""

import csv
import glob
import gzip
import io
import json
import os
import random
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN = 100
TEST = 1000
WHEELS = {
    "scikit-learn": ("scikit_learn", "1.9.1"),
    "palmerpenguins": ("palmerpenguins", "0.1.6"),
    "statsmodels": ("statsmodels", "0.15.0"),
    "vega_datasets": ("vega_datasets", "0.9.0"),
    "river": ("river", "0.26.1"),
}


def member(wheels, package, path):
    """Bytes of `path` inside `package`'s pinned wheel in the folder `wheels`."""
    stem, version = WHEELS[package]
    found = glob.glob(os.path.join(wheels, f"{stem}-{version}-*.whl"))
    if not found:
        sys.exit(f"no {stem}-{version}-*.whl in {wheels}: see this script's docstring")
    with zipfile.ZipFile(sorted(found)[0]) as whl:
        return whl.read(path)


def text(wheels, package, path):
    data = member(wheels, package, path)
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    elif path.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            (name,) = z.namelist()
            data = z.read(name)
    return data.decode("utf-8")


def sklearn_table(wheels, path, features):
    """sklearn's bundled CSV: a first line `n,d,class names...`, then rows
    of `d` values and the class index."""
    lines = text(wheels, "scikit-learn", "sklearn/datasets/data/" + path).splitlines()
    head = lines[0].split(",")
    n, d, classes = int(head[0]), int(head[1]), head[2:]
    rows = [line.split(",") for line in lines[1:] if line]
    assert len(rows) == n and d == len(features)
    return features, [r[:d] + [classes[int(r[d])]] for r in rows]


def iris(wheels):
    names = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
    features = [n.replace(" (cm)", "_cm").replace(" ", "_") for n in names]
    return sklearn_table(wheels, "iris.csv", features)


def wine(wheels):
    features = [
        "alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium",
        "total_phenols", "flavanoids", "nonflavanoid_phenols", "proanthocyanins",
        "color_intensity", "hue", "od280/od315_of_diluted_wines", "proline",
    ]
    return sklearn_table(wheels, "wine_data.csv", features)


def breast_cancer(wheels):
    kinds = [
        "radius", "texture", "perimeter", "area", "smoothness", "compactness",
        "concavity", "concave points", "symmetry", "fractal dimension",
    ]
    names = [f"mean {k}" for k in kinds] + [f"{k} error" for k in kinds]
    names += [f"worst {k}" for k in kinds]
    return sklearn_table(wheels, "breast_cancer.csv", [n.replace(" ", "_") for n in names])


def digits(wheels):
    """8x8 images of handwritten digits, 17 grey levels (0..16); the class
    name is the digit."""
    raw = text(wheels, "scikit-learn", "sklearn/datasets/data/digits.csv.gz")
    rows = [line.split(",") for line in raw.splitlines() if line]
    features = [f"pixel_{r}_{c}" for r in range(8) for c in range(8)]
    assert len(rows) == 1797 and all(len(r) == 65 for r in rows)
    return features, [[str(int(float(v))) for v in r] for r in rows]


def penguins(wheels):
    """Rows with a missing value dropped; `sex` as `sex_male` (0/1), `island`
    as three 0/1 columns; `year` (of the field season) dropped."""
    raw = text(wheels, "palmerpenguins", "palmerpenguins/data/penguins.csv")
    islands = ["Biscoe", "Dream", "Torgersen"]
    measures = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    features = measures + ["sex_male"] + [f"island_{i.lower()}" for i in islands]
    rows = []
    for r in csv.DictReader(io.StringIO(raw)):
        if "NA" in r.values():
            continue
        assert r["sex"] in ("male", "female") and r["island"] in islands
        sex = [str(int(r["sex"] == "male"))]
        island = [str(int(r["island"] == i)) for i in islands]
        rows.append([r[m] for m in measures] + sex + island + [r["species"]])
    return features, rows


def image_segment(wheels):
    """UCI Statlog (Image Segmentation) as river ships it (the constant
    `region-pixel-count` column already left out), with UCI's column names
    (river's `vegde-sd` is UCI's `vedge-sd`) and river's re-printed floats
    (e.g. 0.8333326999999999) printed back with 10 significant digits."""
    raw = text(wheels, "river", "river/datasets/segment.csv.zip")
    reader = csv.reader(io.StringIO(raw))
    head = next(reader)
    assert head[-1] == "category" and len(head) == 19
    features = [h.replace("vegde", "vedge").replace("-", "_") for h in head[:-1]]
    rows = []
    for r in reader:
        values = ["%.10g" % float(v) for v in r[:-1]]
        assert all(abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))
                   for a, b in zip(values, r[:-1]))
        rows.append(values + [r[-1]])
    return features, rows


def auto_mpg(wheels):
    """Cars of 1970-1982 by region of origin; rows with a missing value
    (miles per gallon or horsepower) and the car's name dropped; `year` is
    the model year (19xx)."""
    cars = json.loads(text(wheels, "vega_datasets", "vega_datasets/_data/cars.json"))
    columns = [
        ("Miles_per_Gallon", "miles_per_gallon"), ("Cylinders", "cylinders"),
        ("Displacement", "displacement_cu_in"), ("Horsepower", "horsepower"),
        ("Weight_in_lbs", "weight_lbs"), ("Acceleration", "acceleration_s"),
    ]
    features = [name for _, name in columns] + ["year"]
    rows = []
    for car in cars:
        if any(car[key] is None for key, _ in columns):
            continue
        year = car["Year"][:4]
        assert car["Year"] == f"{year}-01-01"
        rows.append([str(car[key]) for key, _ in columns] + [year, car["Origin"].lower()])
    return features, rows


def anes96_vote(wheels):
    """1996 American National Election Study subset: expected vote (Clinton
    or Dole) from the respondent's answers."""
    raw = text(wheels, "statsmodels", "statsmodels/datasets/anes96/anes96.csv")
    reader = csv.reader(io.StringIO(raw), delimiter="\t")
    head = [h.strip("'") for h in next(reader)]
    names = {"popul": "popul", "TVnews": "tv_news", "selfLR": "self_lr",
             "ClinLR": "clin_lr", "DoleLR": "dole_lr", "PID": "pid", "age": "age",
             "educ": "educ", "income": "income"}
    assert head == list(names) + ["vote"]
    votes = {"0": "clinton", "1": "dole"}
    return list(names.values()), [r[:-1] + [votes[r[-1]]] for r in reader if r]


def shuttle(wheels):
    """UCI Statlog (Shuttle) as river ships it (the ODDS anomaly version):
    nine integer sensor readings; the majority class is `normal`, the rare
    classes together `anomaly`."""
    raw = text(wheels, "river", "river/datasets/shuttle.csv.gz")
    reader = csv.reader(io.StringIO(raw))
    head = next(reader)
    assert head == [f"f{i}" for i in range(1, 10)] + ["anomaly"]
    classes = {"0": "normal", "1": "anomaly"}
    return head[:-1], [r[:-1] + [classes[r[-1]]] for r in reader if r]


TABLES = {
    "iris": iris,
    "wine": wine,
    "breast_cancer": breast_cancer,
    "digits": digits,
    "penguins": penguins,
    "image_segment": image_segment,
    "auto_mpg": auto_mpg,
    "anes96_vote": anes96_vote,
    "shuttle": shuttle,
}


def write(path, features, rows):
    with open(path, "w", encoding="ascii", newline="") as f:
        for row in [features + ["label"]] + rows:
            assert all(v and not set(v) & set(',"\n ') for v in row), row
            f.write(",".join(row) + "\n")


def make(wheels, name):
    features, rows = TABLES[name](wheels)
    for r in rows:
        assert len(r) == len(features) + 1
        for v in r[:-1]:
            float(v)
    random.Random(0).shuffle(rows)
    train, test = rows[:TRAIN], rows[TRAIN:TRAIN + TEST]
    classes = sorted({r[-1] for r in rows})
    counts = {c: sum(r[-1] == c for r in train) for c in classes}
    assert 2 <= len(classes) <= 10 and min(counts.values()) >= 3, (name, counts)
    folder = os.path.join(HERE, name)
    os.makedirs(folder, exist_ok=True)
    write(os.path.join(folder, "train.csv"), features, train)
    write(os.path.join(folder, "test.csv"), features, test)
    print(f"{name}: {len(train)} + {len(test)} rows of {len(rows)}, "
          f"{len(features)} features, training rows per class {counts}")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    names = sys.argv[2:] or list(TABLES)
    for name in names:
        if name not in TABLES:
            sys.exit(f"unknown table {name}: one of {', '.join(TABLES)}")
    for name in names:
        make(sys.argv[1], name)


if __name__ == "__main__":
    main()
