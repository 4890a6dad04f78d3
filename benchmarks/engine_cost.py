"""Cost of one sample with the default GPAW settings (dzp, PBE, k-density 2.0/A^-1, SOC).

Prints, for Si, GaAs and SrTiO3: wall seconds (H0 extraction, SCF, total), peak memory of
the run (measured in a fresh subprocess per structure), number of edges, and the bytes of
the sample dense in memory (raw float64/complex128, all edges) vs as written (.npz,
canonical half of the edges, lossless compression), with their ratio.

    python benchmarks/engine_cost.py [--structure NAME ...]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, time
from materials_ham.engines import get_engine
from materials_ham.structures import default_structures
name, out = sys.argv[1], sys.argv[2]
crystal, prov = default_structures([name])[name]
t0 = time.perf_counter()
s = get_engine("gpaw").compute(crystal, provenance=prov)
wall = time.perf_counter() - t0
s.save(out)
raw = s.H.nbytes + s.H0.nbytes + s.S.nbytes
print(json.dumps({"name": name, "atoms": s.n_atoms, "nao": s.nao, "mp_grid": s.engine["mp_grid"],
    "edges": s.n_edges, "wall_s": wall, "h0_s": s.info["seconds_h0"], "scf_s": s.info["seconds_scf"],
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "raw_bytes": raw, "written_bytes": os.path.getsize(out)}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--structure", action="append",
                    default=None, help="Si-diamond, GaAs-zincblende, SrTiO3-perovskite, PbTe-rocksalt")
    args = ap.parse_args()
    names = args.structure or ["Si-diamond", "GaAs-zincblende", "SrTiO3-perovskite"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            r = subprocess.run([sys.executable, "-c", CHILD, name, str(Path(tmp) / f"{name}.npz")],
                               capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1",
                                                                    "OPENBLAS_NUM_THREADS": "1"})
            if r.returncode:
                print(r.stderr, file=sys.stderr)
                continue
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
            row = rows[-1]
            print(f"{row['name']:<18} atoms {row['atoms']:>2}  nao {row['nao']:>3}  k {row['mp_grid']}  "
                  f"edges {row['edges']:>5}  wall {row['wall_s']:7.1f} s (H0 {row['h0_s']:.1f}, SCF {row['scf_s']:.1f})  "
                  f"peak {row['peak_rss_mib']:7.0f} MiB  raw {row['raw_bytes'] / 2**20:7.1f} MiB  "
                  f"written {row['written_bytes'] / 2**20:6.1f} MiB  ratio {row['raw_bytes'] / row['written_bytes']:.2f}",
                  flush=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
