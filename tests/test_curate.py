"""Curation: the built-in prototypes, sources, filters, deduplication, splits and the catalog file."""
import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from materials_ham import FormatError, MaterialsHamError, StructureError
from materials_ham.engines import get_engine
from materials_ham.structures import prototypes as P
from materials_ham.structures import sources
from materials_ham.structures.curate import (CATALOG_COLUMNS, PRESETS, catalog_crystal, curate, read_catalog,
                                             write_catalog)
from materials_ham.structures.io import min_distance
from materials_ham.structures.splits import held_out_split, random_split
from materials_ham.sample import Crystal

from ase.data import chemical_symbols as P_SYMBOL


@pytest.fixture(scope="module")
def mini():
    p = PRESETS["mini"]
    return curate(sources.prototype_source(polymorphs=p.polymorphs), max_atoms=p.max_atoms,
                  engine=get_engine("gpaw"), min_per_element=p.min_per_element, cover=p.cover)


def test_every_compound_is_a_sane_crystal():
    for comp in P.COMPOUNDS + P.EXTENDED_COMPOUNDS:
        atoms = comp.build()
        crystal = Crystal.from_ase(atoms)
        d, _ = min_distance(crystal)
        # nearest neighbours of real compounds at experimental lattice constants: 1.5-4 A
        assert 1.5 < d < 4.5, (comp.label, d)
        assert sorted(set(atoms.get_chemical_symbols())) == sorted(set(comp.species)), comp.label


def test_extended_compounds_reach_small_and_full_but_never_mini(mini):
    # mini's greedy cover would pick other structures if it saw them: the dataset that every
    # published mini score refers to must stay the same
    extended = {f"proto-{c.label}" for c in P.EXTENDED_COMPOUNDS}
    assert len(extended) == len(P.EXTENDED_COMPOUNDS) >= 9
    assert not extended & {c.id for c in sources.prototype_source()}
    assert not extended & set(mini[0]["id"])
    assert not PRESETS["mini"].extended and PRESETS["small"].extended and PRESETS["full"].extended
    p = PRESETS["small"]
    ids = {c.id for c in sources.prototype_source(polymorphs=p.polymorphs, extended=p.extended)}
    assert extended <= ids
    # they give Cr, whose bcc element and rock-salt nitride are the only Cr structures of mini
    # (in its test and validation splits), structures that are neither
    cr = [c for c in P.EXTENDED_COMPOUNDS if "Cr" in c.species]
    assert {c.prototype for c in cr} >= {"perovskite", "heusler", "nias"}


def test_prototype_geometry_known_cases():
    # rock salt NaCl: nearest neighbour a/2; zinc blende GaAs: a*sqrt(3)/4; perovskite Ti-O: a/2
    assert min_distance(Crystal.from_ase(P.rocksalt("Na", "Cl", 5.64)))[0] == pytest.approx(2.82)
    assert min_distance(Crystal.from_ase(P.zincblende("Ga", "As", 5.65)))[0] == pytest.approx(5.65 * 3 ** .5 / 4)
    assert min_distance(Crystal.from_ase(P.perovskite("Sr", "Ti", "O", 3.905)))[0] == pytest.approx(3.905 / 2)
    li2o = P.antifluorite("Li", "O", 4.61)
    assert Counter(li2o.get_chemical_symbols()) == {"Li": 2, "O": 1}


def test_every_source_candidate_has_its_own_id():
    # the full preset's polymorphs (fcc, hcp, bcc for every element) once collided with a
    # reference structure of the same kind (bcc Li): curation stopped on the duplicate id
    for polymorphs in ("none", "needed", "all"):
        ids = Counter(c.id for c in sources.prototype_source(polymorphs=polymorphs))
        assert [i for i, n in ids.items() if n > 1] == [], polymorphs
    ids = [c.id for c in sources.prototype_source(polymorphs="all")]
    assert {"proto-Li-bcc", "proto-Li-fcc", "proto-Li-hcp"} <= set(ids)


def test_mini_preset_covers_every_engine_element_twice(mini):
    df, report = mini
    from ase.data import chemical_symbols

    covered = [chemical_symbols[z] for z in list(range(1, 57)) + list(range(72, 84)) if z != 43]
    assert len(covered) == 67
    for sym in covered:
        assert report.element_counts[sym] >= 2, sym
    assert "Tc" not in report.element_counts
    assert report.dropped_ids["proto-Tc-hcp"].startswith("not covered by the gpaw engine")
    assert df["n_atoms"].max() <= 5
    # the cover is small: at least 67 * 2 element appearances, mostly binaries
    assert 67 <= len(df) <= 110
    assert report.dropped["not needed for the element cover"] > 100
    assert list(df.columns) == list(CATALOG_COLUMNS)
    assert df["id"].is_unique
    # the paper's 12 : 2 : 3 proportions
    n = len(df)
    counts = df["split"].value_counts()
    assert abs(counts["train"] - 12 / 17 * n) <= 1 and abs(counts["test"] - 3 / 17 * n) <= 1


def test_cover_is_cheaper_than_everything_and_still_covers():
    from materials_ham.structures.curate import relative_cost, select_cover

    cands = [c for c in sources.prototype_source() if len(c.crystal) <= 5]
    items = [(c, None) for c in cands]
    kept = select_cover(items, 2, {"Si", "Ga", "As", "He"})
    ids = [c.id for c, _ in kept]
    # He only exists as an element: both He structures; Si/Ga/As from the cheapest binaries
    assert {"proto-He-fcc", "proto-He-hcp"} <= set(ids)
    counts = Counter(el for c, _ in kept for el in {P_SYMBOL[z] for z in c.crystal.numbers})
    assert all(counts[el] >= 2 for el in ("Si", "Ga", "As", "He"))
    assert len(kept) == 7  # the minimum: He twice, GaAs, a second Ga and As structure, two with Si
    # an elemental metal costs more than an ionic binary of the same size
    assert relative_cost(Crystal.from_ase(P._bulk("Ti", "hcp", a=2.95, c=4.68))) > \
        relative_cost(Crystal.from_ase(P.rocksalt("Na", "Cl", 5.64)))


def test_min_per_element_is_enforced():
    cands = [c for c in sources.prototype_source() if c.id in ("proto-Si-diamond", "proto-GaAs-zincblende")]
    with pytest.raises(MaterialsHamError, match="below 2 structures"):
        curate(cands, engine=get_engine("gpaw"), min_per_element=2)


def test_deduplication_finds_a_supercell_rotated_copy():
    from ase.build import bulk

    si = bulk("Si", "diamond", a=5.43)
    conv = bulk("Si", "diamond", a=5.43, cubic=True)  # 8-atom conventional cell of the same crystal
    conv.rotate(30, "z", rotate_cell=True)
    ge = bulk("Ge", "diamond", a=5.66)
    cands = [sources.Candidate("a", Crystal.from_ase(si), "test", "a"),
             sources.Candidate("b", Crystal.from_ase(conv), "test", "b"),
             sources.Candidate("c", Crystal.from_ase(ge), "test", "c")]
    df, report = curate(cands, split="ood-elements", holdout_elements=["Ge"])
    assert report.duplicates == {"b": "a"}
    assert df["id"].tolist() == ["a", "c"]
    df2, report2 = curate(cands, dedup=False, split="ood-elements", holdout_elements=["Ge"])
    assert len(df2) == 3 and not report2.duplicates


def test_filters_drop_with_reasons():
    cands = [sources.Candidate("big", Crystal.from_ase(P.perovskite("Sr", "Ti", "O", 3.9)), "t", "big"),
             sources.Candidate("tc", Crystal([43], [[0, 0, 0]], np.eye(3) * 2.8), "t", "tc"),
             sources.Candidate("sm", Crystal([62], [[0, 0, 0]], np.eye(3) * 3.0), "t", "sm"),
             sources.Candidate("si", Crystal.from_ase(P._bulk("Si", "diamond", a=5.43)), "t", "si"),
             sources.Candidate("ge", Crystal.from_ase(P._bulk("Ge", "diamond", a=5.66)), "t", "ge")]
    df, report = curate(cands, max_atoms=4, engine=get_engine("gpaw"), split="ood-elements",
                        holdout_elements=["Ge"])
    assert df["id"].tolist() == ["si", "ge"]
    assert report.dropped_ids["big"] == "more than 4 atoms"
    assert "Tc" in report.dropped_ids["tc"] and "gpaw" in report.dropped_ids["tc"]
    assert "Sm" in report.dropped_ids["sm"] and report.dropped_ids["sm"].startswith("invalid structure")


def test_random_split_is_seeded_and_order_independent():
    ids = [f"s{k}" for k in range(170)]
    a = random_split(ids, seed=1)
    assert a == random_split(list(reversed(ids)), seed=1)
    assert a != random_split(ids, seed=2)
    assert Counter(a.values()) == {"train": 120, "val": 20, "test": 30}


def test_ood_splits_hold_out_what_they_say():
    cands = [c for c in sources.prototype_source() if len(c.crystal) <= 5]
    ood, _ = curate(cands, max_atoms=5, split="ood-elements", holdout_elements=["Bi", "Ne"])
    has = ood["elements"].apply(lambda e: bool({"Bi", "Ne"} & set(e)))
    assert (ood.loc[has, "split"] == "test").all() and (ood.loc[~has, "split"] != "test").all()
    assert has.sum() >= 4
    proto, _ = curate(cands, max_atoms=5, split="ood-prototype", holdout_prototypes=["perovskite"])
    per = proto["prototype"] == "perovskite"
    assert (proto.loc[per, "split"] == "test").all() and (proto.loc[~per, "split"] != "test").all()
    with pytest.raises(MaterialsHamError, match="holds out nothing"):
        held_out_split(["a", "b"], [False, False])


def test_folder_source(tmp_path):
    from ase.build import bulk

    (tmp_path / "sub").mkdir()
    bulk("GaAs", "zincblende", a=5.65).write(tmp_path / "gaas.cif")
    bulk("Cu", "fcc", a=3.61).write(tmp_path / "sub" / "POSCAR", format="vasp")
    cands = list(sources.folder_source(tmp_path))
    assert [c.id for c in cands] == ["file-gaas", "file-sub_POSCAR"]
    assert cands[0].source_id == "gaas.cif"
    (tmp_path / "junk.cif").write_text("not a crystal")
    with pytest.raises(StructureError, match="junk.cif"):
        list(sources.folder_source(tmp_path))
    rejected = []
    assert len(list(sources.folder_source(tmp_path, skip_invalid=True, rejected=rejected))) == 2
    assert rejected and rejected[0][0].endswith("junk.cif")


def test_materials_project_needs_a_key(monkeypatch):
    for var in sources.MP_KEY_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(sources.SourceUnavailable, match="MP_API_KEY"):
        list(sources.materials_project_source())


def test_catalog_roundtrip_and_bad_files(mini, tmp_path):
    df, _ = mini
    path = write_catalog(df.head(5), tmp_path / "c.parquet")
    back = read_catalog(path)
    assert back["id"].tolist() == df["id"].head(5).tolist()
    c = catalog_crystal(back.iloc[0])
    np.testing.assert_array_equal(c.cell, np.asarray(df.iloc[0]["cell"]).reshape(3, 3))
    (tmp_path / "junk.parquet").write_text("nope")
    with pytest.raises(FormatError, match="junk.parquet.*not a Parquet catalog"):
        read_catalog(tmp_path / "junk.parquet")
    write_catalog(df.head(3).drop(columns=["cell"]), tmp_path / "nocell.parquet")
    with pytest.raises(FormatError, match="lacks column.*cell"):
        read_catalog(tmp_path / "nocell.parquet")
    dup = df.head(3).copy()
    dup.loc[2, "id"] = dup.loc[0, "id"]
    write_catalog(dup, tmp_path / "dup.parquet")
    with pytest.raises(FormatError, match="duplicate id"):
        read_catalog(tmp_path / "dup.parquet")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "materials_ham.cli", *args], capture_output=True, text=True)


def test_cli_structures(tmp_path):
    out = tmp_path / "cat.parquet"
    r = _cli("structures", "--preset", "mini", "-o", str(out), "--report", str(tmp_path / "rep.json"))
    assert r.returncode == 0, r.stderr
    assert 67 <= len(read_catalog(out)) <= 110
    assert json.loads((tmp_path / "rep.json").read_text())["dropped"]["not covered by the gpaw engine"] == 1


def test_cli_structures_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    monkeypatch.delenv("PMG_MAPI_KEY", raising=False)
    r = _cli("structures", "--source", "mp", "-o", str(tmp_path / "c.parquet"))
    assert r.returncode == 6 and "MP_API_KEY" in r.stderr and "Traceback" not in r.stderr
    r = _cli("structures", "--source", str(tmp_path / "nowhere"), "-o", str(tmp_path / "c.parquet"))
    assert r.returncode == 2 and "not a folder" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "c.parquet").exists()


# ------------------------------------------------------------------------ training supplement
def test_training_supplement_covers_the_dataset_elements_and_never_picks_its_structures(mini):
    """The supplement of the mini catalog (as the dataset) from the prototypes <= 5 atoms: no
    structure of the dataset, nor a rotated supercell of one of its test structures under a new id;
    every element reaches 3 training structures unless no candidate is left; every pick needed."""
    from ase.build import make_supercell

    from materials_ham.structures.supplement import training_supplement

    df, _ = mini
    dataset = [(r["id"], r["split"], catalog_crystal(r)) for _, r in df.iterrows()]
    test_row = df[df["split"] == "test"].iloc[0]
    copy = catalog_crystal(test_row).to_ase()
    copy = make_supercell(copy, [[1, 1, 0], [0, 1, 0], [0, 0, 2]])
    copy.rotate(40, "z", rotate_cell=True)
    cands = list(sources.prototype_source()) + [sources.Candidate("renamed", Crystal.from_ase(copy), "test", "x")]
    catalog, _ = curate(cands, max_atoms=20, engine=get_engine("gpaw"), dedup=False)
    sup, report = training_supplement(catalog, dataset, min_per_element=3)

    assert set(sup["split"]) == {"train"} and not set(sup["id"]) & set(df["id"])
    assert report.dropped["renamed"] == f"equivalent to {test_row['id']} (test) of the dataset"
    before = Counter(e for els in df[df["split"] == "train"]["elements"] for e in els)
    after = before + Counter(e for els in sup["elements"] for e in els)
    same = {k for k, why in report.dropped.items() if why.startswith("equivalent")}
    left = catalog[~catalog["id"].isin(set(sup["id"]) | set(df["id"]) | same)]
    for el in report.elements:
        assert after[el] == report.after[el]
        if after[el] < 3:       # only when no usable candidate with the element is left
            assert el in report.short and not any(el in els for els in left["elements"]), el
    assert all(any(before[e] < 3 for e in els) for els in sup["elements"])
    assert 0 < len(sup) < len(left)

    # a second supplement on top of the first (``existing``): the first's structures count, are never
    # picked again, nor are renamed copies of them
    first = [(r["id"], "train", catalog_crystal(r)) for _, r in sup.iterrows()]
    again = sources.Candidate("again", first[0][2], "test", "x")
    catalog2, _ = curate(cands + [again], max_atoms=20, engine=get_engine("gpaw"), dedup=False)
    sup2, report2 = training_supplement(catalog2, dataset, min_per_element=4, existing=first)
    assert not set(sup2["id"]) & (set(sup["id"]) | set(df["id"]) | {"again"})
    assert report2.before == Counter({el: n for el, n in after.items() if n})
    assert all(report2.dropped[sid] == "in an existing supplement" for sid in sup["id"])
    assert report2.dropped["again"] == f"equivalent to {first[0][0]} of an existing supplement"
    assert all(any(after[e] < 4 for e in els) for els in sup2["elements"])


def test_cli_supplement(tmp_path, si_sample):
    """`materials-ham supplement`: a dataset holding one Si cell (a test structure) gets training
    structures with Si (not the diamond cell itself, which is the test structure); bad input is
    one line and no file."""
    from materials_ham.store import write_store

    ds = write_store(tmp_path / "ds", [(si_sample, {"id": "si", "formula": "Si", "split": "test",
                                                    "elements": ["Si"]})],
                     attrs={"dataset_name": "t", "dataset_version": "1"}, progress=False)
    cands = [c for c in sources.prototype_source() if "Si" in c.id.split("-")[1]]
    catalog, _ = curate(cands, max_atoms=5, dedup=False)
    write_catalog(catalog, tmp_path / "cands.parquet")
    out = tmp_path / "sup.parquet"
    r = _cli("supplement", str(tmp_path / "cands.parquet"), "--for", str(ds), "-o", str(out),
             "--min-per-element", "2", "--report", str(tmp_path / "rep.json"))
    assert r.returncode == 0, r.stderr
    sup = read_catalog(out)
    assert len(sup) == 2 and all("Si" in els for els in sup["elements"]) and set(sup["split"]) == {"train"}
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["dropped"]["proto-Si-diamond"] == "equivalent to si (test) of the dataset"
    assert rep["after"] == {"Si": 2} and rep["short"] == []

    # --with: a supplement already made (one training Si cell) counts: one more structure is enough
    prev = write_store(tmp_path / "prev", [(si_sample, {"id": "si-prev", "formula": "Si", "split": "train",
                                                        "elements": ["Si"]})],
                       attrs={"dataset_name": "p", "dataset_version": "1"}, progress=False)
    r = _cli("supplement", str(tmp_path / "cands.parquet"), "--for", str(ds), "--with", str(prev),
             "-o", str(tmp_path / "sup2.parquet"), "--min-per-element", "2", "--report", str(tmp_path / "rep2.json"))
    assert r.returncode == 0, r.stderr
    assert len(read_catalog(tmp_path / "sup2.parquet")) == 1
    rep = json.loads((tmp_path / "rep2.json").read_text())
    assert rep["before"] == {"Si": 1} and rep["after"] == {"Si": 2}

    # --skip-failed: a candidate that failed an earlier generation run is not picked again; another is
    from materials_ham.generate import Staging

    picked = sorted(sup["id"])
    (tmp_path / "staging" / "failed").mkdir(parents=True)
    Staging(tmp_path / "staging").failed(picked[0]).write_text(json.dumps(
        {"id": picked[0], "kind": "validation", "cause": "failed band_reproduction"}))
    r = _cli("supplement", str(tmp_path / "cands.parquet"), "--for", str(ds), "--skip-failed", str(tmp_path / "staging"),
             "-o", str(tmp_path / "sup3.parquet"), "--min-per-element", "2", "--report", str(tmp_path / "rep3.json"))
    assert r.returncode == 0, r.stderr
    sup3 = read_catalog(tmp_path / "sup3.parquet")
    assert picked[0] not in set(sup3["id"]) and len(sup3) == 2 and "failed in an earlier generation run" in r.stdout
    rep = json.loads((tmp_path / "rep3.json").read_text())
    assert rep["dropped"][picked[0]].startswith("failed before: validation in ")
    r = _cli("supplement", str(tmp_path / "cands.parquet"), "--for", str(ds), "--skip-failed", str(tmp_path),
             "-o", str(tmp_path / "x.parquet"))
    assert r.returncode != 0 and "not the staging folder" in r.stderr and "Traceback" not in r.stderr

    r = _cli("supplement", str(tmp_path / "nowhere.parquet"), "--for", str(ds), "-o", str(tmp_path / "x.parquet"))
    assert r.returncode != 0 and "no such catalog file" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.parquet").exists()
