"""The CCR benthic patches driven through the annotation-tool path: CoralNet export -> import-points ->
train -> predict -> cover error (docs/results/interchange.md).

Each CCR patch is a 224 x 224 cut centred on one annotated point, labelled with the label set's short
code (``BR_fucus``), so the set is written as the CoralNet annotation CSV a CoralNet user would export
(``Name``, ``Row`` 112, ``Column`` 112, ``Label`` the code, and the manifest's ``split`` as a metadata
column), with two label maps: codes -> the 3-5 level habitat hierarchy (from the manifest's own
code/path pairs) and codes -> CATAMI (``proposed_catami_mapping.csv``, checked against BenthicNet's
CATAMI scheme).  Then the user's commands, timed: ``import-points``, ``train`` (configs/ccr_benthic.yaml:
frozen ImageNet MobileNetV2, the rare-node loss), ``predict`` on the test rows under the fitted rule
and at a fixed 0.5, and ``export`` of each: CoralNet suggestions and the cover error per node (the
predicted against the annotated share of test points, in percentage points).

    make weights
    python scripts/ccr_interchange.py --out runs/interchange [--set loss.name=control]
    python scripts/ccr_interchange.py --export-only --out runs/coralnet_example  # the export alone
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from seabed_hmc.annotations.export import export_predictions
from seabed_hmc.annotations.label_map import read_label_map
from seabed_hmc.annotations.patches import import_points
from seabed_hmc.atomic import write_text_atomic
from seabed_hmc.config import load_config
from seabed_hmc.engine.inference import predict_images
from seabed_hmc.engine.train import train
from seabed_hmc.hierarchy import from_path_file
from seabed_hmc_studies import ROOT, SHARED_DATA

CCR = SHARED_DATA / "ccr_benthic"
CATAMI = SHARED_DATA / "catami_scheme" / "benthicnet_probes_catami_ex.csv"


def write_coralnet_export(out: Path) -> tuple[Path, Path, Path]:
    """The CCR set as a CoralNet annotation export, and the two label maps."""
    manifest = pd.read_csv(CCR / "manifest.csv")
    export = pd.DataFrame(
        {
            "Name": manifest["path"],
            "Row": 112,
            "Column": 112,
            "Label": manifest["short_code"],
            "split": manifest["split"],
        }  # fmt: skip
    )
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "coralnet_export.csv", export.to_csv(index=False))
    pairs = manifest[["short_code", "hierarchy_path"]].drop_duplicates()
    habitat = pairs.rename(columns={"short_code": "label", "hierarchy_path": "path"})
    write_text_atomic(out / "label_map.csv", habitat.to_csv(index=False))
    catami = pd.read_csv(CCR / "proposed_catami_mapping.csv")
    catami = catami.rename(columns={"short_code": "label", "proposed_catami_path": "path"})
    write_text_atomic(out / "label_map_catami.csv", catami[["label", "path"]].to_csv(index=False))
    return out / "coralnet_export.csv", out / "label_map.csv", out / "label_map_catami.csv"


def catami_check(label_map: Path) -> dict:
    """How many codes the CATAMI map covers, and whether every path is a node of the CATAMI scheme."""
    scheme = from_path_file(CATAMI, on_duplicate="ignore")
    mapping = read_label_map(label_map)
    missing = sorted(path for path in set(mapping.values()) if path not in scheme)
    return {"codes_mapped": len(mapping), "paths_not_in_catami": missing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "interchange")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="run-config override")
    parser.add_argument(
        "--reuse", action="store_true", help="keep an earlier run's patches and model; re-score"
    )
    parser.add_argument(
        "--export-only", action="store_true", help="write the CoralNet export and label maps, and stop"
    )
    args = parser.parse_args()
    if not (CCR / "manifest.csv").exists():
        raise SystemExit(f"{CCR} is missing: this study needs ../shared/data/ccr_benthic")
    times, started = {}, time.perf_counter()
    export, habitat_map, catami_map = write_coralnet_export(args.out)
    if args.export_only:
        print(f"CoralNet export: {export} (images under {CCR}); label maps: {habitat_map}, {catami_map}")
        return
    manifest = args.out / "patches" / "manifest.csv"
    reuse = args.reuse and (args.out / "run" / "best.pt").exists()
    if reuse:  # the earlier run's import counts and timings stay in the record
        earlier = json.loads((args.out / "interchange.json").read_text())
        counts, trained = earlier["import"], None
        times.update({k: v for k, v in earlier["seconds"].items() if k in ("import_points_s", "train_s")})
    else:
        counts = import_points(export, CCR, args.out / "patches", label_map=habitat_map, size=224)
        times["import_points_s"] = time.perf_counter() - started
        config = load_config(
            ROOT / "configs" / "ccr_benthic.yaml",
            [f"data.manifest={manifest}", "data.columns={}", f"out={args.out / 'run'}", *args.set],
        )
        start = time.perf_counter()
        trained = train(config)
        times["train_s"] = time.perf_counter() - start
    if trained is None:
        trained = json.loads((args.out / "run" / "metrics.json").read_text())
    table = pd.read_csv(manifest)
    test_manifest = manifest.parent / "test_manifest.csv"  # beside the manifest: its paths are relative
    write_text_atomic(test_manifest, table[table["split"] == "test"].to_csv(index=False))
    results = {"import": counts, "catami_map": catami_check(catami_map), "decision": trained["decision"]}
    for rule in ("checkpoint", "fixed"):
        start = time.perf_counter()
        predictions = args.out / f"test_predictions_{rule}.csv"
        predict_images(args.out / "run" / "best.pt", test_manifest, predictions, decision=rule)
        times[f"predict_{rule}_s"] = time.perf_counter() - start
        scored = pd.read_csv(predictions, keep_default_na=False)
        failed = scored[scored["error"] != ""]
        if len(failed):
            raise SystemExit(
                f"{len(failed)} test images could not be predicted, e.g. {failed.iloc[0]['error']}"
            )
        start = time.perf_counter()
        summary = export_predictions(predictions, args.out / f"export_{rule}", label_map=habitat_map)
        times[f"export_{rule}_s"] = time.perf_counter() - start
        errors = pd.read_csv(args.out / f"export_{rule}" / "cover_error.csv")
        results[f"cover_{rule}"] = {
            "test_points": len(scored),
            "points_without_label": summary["points_without_label"],
            "mean_abs_error_points": summary["cover"]["mean_abs_error_points"],
            "max_abs_error_points": summary["cover"]["max_abs_error_points"],
            "expected_mean_abs_error_points": summary["cover"]["expected_mean_abs_error_points"],
            "nodes_inside_interval": summary["cover"]["nodes_inside_interval"],
            "leaf_mean_abs_error_points": round(
                float(errors[errors["depth"] == errors["depth"].max()]["error_points"].mean()), 3
            ),
        }
    times["this_run_s"] = time.perf_counter() - started
    # export -> patches -> model -> test predictions -> suggestions and cover: what a CoralNet user waits for
    steps = ("import_points_s", "train_s", "predict_checkpoint_s", "export_checkpoint_s")
    times["export_to_cover_s"] = sum(times.get(k, 0) for k in steps)
    results["seconds"] = {k: round(v, 1) for k, v in times.items()}
    results["test_metrics"] = {
        k: round(trained["test"][k], 4) for k in ("au_prc", "f1_all", "rare_node_recall")
    }
    write_text_atomic(args.out / "interchange.json", json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
