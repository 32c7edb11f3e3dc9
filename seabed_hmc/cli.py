"""The ``seabed-hmc`` command line: demo, train, ablate, evaluate, predict, predict-tiles and more."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

from seabed_hmc.config import DECISION_POLICIES, DECISION_RULES, SPLIT_CHOICES, ConfigError
from seabed_hmc.remedies import CONFIG, surface


def _train(args: argparse.Namespace) -> int:
    from seabed_hmc.config import load_config
    from seabed_hmc.engine.train import train

    config = load_config(args.config, args.set or [])
    if args.out:
        config.out = args.out
    metrics = train(config, resume=args.resume)
    if metrics:  # under torchrun, rank 0 reports
        print(json.dumps({"out": config.out, **metrics}, indent=2, default=str))
    from seabed_hmc.engine.distributed import exit_cleanly

    exit_cleanly(0)
    return 0


DEVICE_HELP = "auto (a GPU if torch sees one), cpu, cuda or cuda:N"
DECISION_HELP = "fixed (0.5), checkpoint (the rule fit with the model; default), or a .json/.pt file"


def _evaluate(args: argparse.Namespace) -> int:
    from seabed_hmc.engine.inference import evaluate_checkpoint

    metrics = evaluate_checkpoint(
        args.checkpoint,
        args.manifest,
        args.out,
        args.batch_size,
        args.workers,
        device=args.device,
        split=args.split,
        root=args.root,
        allow_outside_root=args.allow_outside_root,
        columns=_pairs(args.columns, "--columns"),
        decision=args.decision,
    )
    print(json.dumps(metrics, indent=2))
    trained_on = metrics["trained_on"]
    overlap = (
        "the checkpoint does not record its training images"
        if trained_on is None
        else f"{trained_on} of them were training images" + (" (scores optimistic)" if trained_on else "")
    )
    print(f"scored {metrics['scored']}: {metrics['images']} images, {overlap}", file=sys.stderr)
    return 0


def _pairs(items: list[str] | None, flag: str) -> dict[str, str] | None:
    """KEY=VALUE command-line items as a dict."""
    if not items:
        return None
    pairs = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key or not value:
            raise ValueError(f"{flag} {item!r}: expected KNOWN=NAME, e.g. image=path")
        pairs[key.strip()] = value.strip()
    return pairs


def _predict(args: argparse.Namespace) -> int:
    from seabed_hmc.engine.inference import predict_images

    counts = predict_images(
        args.checkpoint,
        args.images,
        args.out,
        args.batch_size,
        args.workers,
        args.threshold,
        device=args.device,
        decision=args.decision,
    )
    print(
        f"wrote {args.out}: {counts['predicted']} images predicted ({counts['abstained']} abstained: no "
        f"node passed), {counts['failed']} unreadable (rows with 'error')"
    )
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from seabed_hmc.config import DecisionConfig
    from seabed_hmc.engine.inference import calibrate_checkpoint

    settings = DecisionConfig(args.policy, args.precision, args.min_positives, args.rule, args.threshold)
    decision = calibrate_checkpoint(
        args.checkpoint, args.manifest, args.out, settings, split=args.split, device=args.device
    )
    sources = {source: decision.sources.count(source) for source in dict.fromkeys(decision.sources)}
    print(json.dumps({"out": args.out, "decision": decision.describe(), "threshold_sources": sources}))
    return 0


def _stats(args: argparse.Namespace) -> int:
    from seabed_hmc.data.images import dataset_statistics
    from seabed_hmc.engine.inference import image_list

    paths, _ = image_list(args.images)
    mean, std = dataset_statistics(paths, size=args.size, max_images=args.max_images)
    print(
        json.dumps(
            {
                "images": len(paths),
                "mean": [round(float(v), 5) for v in mean],
                "std": [round(float(v), 5) for v in std],
            }
        )
    )
    print("use in a config as data.mean / data.std, or set data.normalisation: dataset", file=sys.stderr)
    return 0


def _ablate(args: argparse.Namespace) -> int:
    from seabed_hmc.limited_data.grid import load_ablation_config, parse_only, run_ablation
    from seabed_hmc.limited_data.report import write_report

    config = load_ablation_config(args.config, args.set or [])
    only = parse_only(args.only or [])
    out = Path(args.out)
    if not args.report_only:
        results = run_ablation(config, out, progress=not args.no_progress, only=only)
        print(f"{len(results)} cells in {out / 'results.csv'}")
    if not (out / "results.csv").exists():
        raise FileNotFoundError(f"{out / 'results.csv'} does not exist: no finished cells to report")
    print(f"wrote {write_report(out, config.control)}")
    return 0


def _predict_tiles(args: argparse.Namespace) -> int:
    from seabed_hmc.config import load_tile_config
    from seabed_hmc.engine.tiles import predict_tiles

    try:
        scale = [float(v) for v in args.scale.split(",")] if args.scale else None
    except ValueError:
        raise ValueError(f"--scale {args.scale!r}: give numbers, low,high per band") from None
    flags = ("tile_size", "stride", "units", "cell", "roi", "bands", "nodata", "max_invalid", "decision")
    given = {key: getattr(args, key) for key in (*flags, "threshold", "batch_size", "workers", "device")}
    given |= {"precision": args.precision, "compile": True if args.compile else None}
    given |= {"scale": scale, "progress": False if args.no_progress else None}
    settings = load_tile_config(args.config, given)  # the flags given win over the file
    summary = predict_tiles(args.checkpoint, args.raster, args.out, settings)
    if summary:
        print(json.dumps(summary, indent=2))
    from seabed_hmc.engine.distributed import exit_cleanly

    exit_cleanly(0)  # under torchrun only: leave the group and exit (see engine/distributed.py)
    return 0


def _chips(args: argparse.Namespace) -> int:
    from seabed_hmc.data.geo import BandSettings
    from seabed_hmc.data.geo_labels import (
        read_class_table,
        read_points,
        write_label_tiles,
        write_point_chips,
    )

    bands = BandSettings(tuple(args.bands) if args.bands else None)
    if (args.points is None) == (args.label_raster is None):
        raise ValueError("give either --points or --label-raster (with --classes)")
    if args.points:
        points = read_points(args.points, crs=args.crs, label_column=args.label_column)
        counts = write_point_chips(args.raster, points, args.out, args.size, bands)
    else:
        if not args.classes:
            raise ValueError("--label-raster needs --classes, a CSV of id,path")
        counts = write_label_tiles(
            args.raster,
            args.label_raster,
            read_class_table(args.classes),
            args.out,
            args.size,
            args.stride,
            args.min_fraction,
            args.max_invalid,
            bands,
        )
    print(json.dumps(counts))
    print(f"manifest: {Path(args.out) / 'manifest.csv'}; skipped and why: {Path(args.out) / 'problems.csv'}")
    return 0


def _import_points(args: argparse.Namespace) -> int:
    from seabed_hmc.annotations.patches import import_points
    from seabed_hmc.hierarchy import load_hierarchy

    hierarchy = load_hierarchy(args.hierarchy) if args.hierarchy else None
    counts = import_points(
        args.export,
        args.images,
        args.out,
        format=args.format,
        label_map=args.label_map,
        hierarchy=hierarchy,
        size=args.size,
        edge=args.edge,
        unit=args.unit,
        max_bad_fraction=args.max_bad_fraction,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
    )
    print(json.dumps(counts))
    out = Path(args.out)
    print(f"manifest: {out / 'manifest.csv'}; skipped and why: {out / 'problems.csv'}")
    if counts["unmapped_labels"]:
        template = out / "label_map_template.csv"
        print(f"labels to map: fill the path column of {template} and give it as --label-map")
    return 0


def _export(args: argparse.Namespace) -> int:
    from seabed_hmc.annotations.export import export_predictions

    summary = export_predictions(
        args.predictions,
        args.out,
        tool=args.tool,
        label_map=args.label_map,
        top_k=args.top_k,
        by=tuple(args.by),
        level=args.level,
        split=args.split,
    )
    print(json.dumps(summary))
    print(f"written to {args.out}; rows left out and why: {Path(args.out) / 'problems.csv'}")
    return 0


def _hierarchy(args: argparse.Namespace) -> int:
    from seabed_hmc.hierarchy import load_hierarchy

    options = {}
    if args.column is not None:
        options["column"] = int(args.column) if args.column.isdigit() else args.column
    if args.encoding:
        options["encoding"] = args.encoding
    if args.on_duplicate:
        options["on_duplicate"] = args.on_duplicate
    if options and Path(args.file).suffix.lower() not in (".csv", ".txt"):
        raise ValueError(f"--column, --encoding and --on-duplicate apply to .csv/.txt files, not {args.file}")
    if not options and _is_manifest(args.file):
        from seabed_hmc.data.manifest import read_manifest

        hierarchy = read_manifest(args.file).hierarchy  # the union of its label paths
        print(f"(from the labels of manifest {args.file})")
    else:
        hierarchy = load_hierarchy(args.file, **options)
    if args.action == "validate":
        print(f"ok: {hierarchy}")
        return 0
    print(hierarchy)
    for node in hierarchy.topological_order if args.all else hierarchy.depth_first_order:
        depth = int(hierarchy.depth[node])
        flag = "" if hierarchy.evaluated[node] else "   (not evaluated)"
        print(f"{'  ' * depth}{hierarchy.short_name(node)}{flag}")
    return 0


def _is_manifest(file: str) -> bool:
    """A CSV whose header has the manifest's image and labels columns."""
    if Path(file).suffix.lower() != ".csv" or not Path(file).is_file():
        return False
    with open(file, newline="", encoding="utf-8-sig", errors="replace") as handle:
        header = {cell.strip() for cell in next(csv.reader(handle), [])}
    return {"image", "labels"} <= header


def _demo(args: argparse.Namespace) -> int:
    from seabed_hmc.demo import run_demo

    run_demo(Path(args.out), quick=args.quick)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seabed-hmc", description="Hierarchical multi-label seafloor classification"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_demo(commands)
    _add_train(commands)
    _add_ablate(commands)
    _add_evaluate(commands)
    _add_calibrate(commands)
    _add_predict(commands)
    _add_tiles(commands)
    _add_chips(commands)
    _add_import_points(commands)
    _add_export(commands)
    _add_stats(commands)
    _add_hierarchy(commands)
    return parser


def _add_demo(commands) -> None:
    demo = commands.add_parser("demo", help="synthetic seafloor images: train control and rare_node, compare")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--quick", action="store_true", help="a smaller, faster demo (used by the tests)")
    demo.set_defaults(run=_demo)


def _add_train(commands) -> None:
    train = commands.add_parser("train", help="train on an image folder or manifest")
    train.add_argument("--config", required=True, help="a YAML run config (see configs/)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. train.epochs=5")
    train.add_argument("--out", help="run folder (overrides the config's out)")
    train.add_argument("--resume", action="store_true", help="continue from the run folder's last.pt")
    train.set_defaults(run=_train)


def _add_ablate(commands) -> None:
    ablate = commands.add_parser(
        "ablate", help="limited-data grid: fractions x configurations x encoders x seeds, with a report"
    )
    ablate.add_argument("--config", required=True, help="a grid YAML (see configs/ablation_quick.yaml)")
    ablate.add_argument("--out", required=True, help="folder for results.csv, report.md and plots")
    ablate.add_argument("--set", action="append", metavar="KEY=VALUE", help="grid override, e.g. seeds=[0,1]")
    ablate.add_argument(
        "--only",
        action="append",
        metavar="KEY=V1,V2",
        help="run only these cells this time, e.g. --only level=1 --only seed=0,1,2 (the grid is unchanged)",
    )
    ablate.add_argument("--report-only", action="store_true", help="rewrite the report from results.csv")
    ablate.add_argument("--no-progress", action="store_true", help="no progress bar")
    ablate.set_defaults(run=_ablate)


def _add_evaluate(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="metrics of a checkpoint on a labelled manifest")
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--manifest", required=True)
    evaluate.add_argument("--out", help="folder for metrics.json and nodes.csv")
    evaluate.add_argument(
        "--split",
        choices=SPLIT_CHOICES,
        default="test",
        help="rows to score when the manifest has a split column (default test; all: every row)",
    )
    evaluate.add_argument("--root", help="the folder image paths start from (default: the manifest's)")
    evaluate.add_argument(
        "--allow-outside-root", action="store_true", help="accept image paths outside the root folder"
    )
    evaluate.add_argument(
        "--columns", nargs="+", metavar="KNOWN=NAME", help="the manifest's column names, e.g. image=path"
    )
    evaluate.add_argument("--decision", default="checkpoint", help=DECISION_HELP)
    evaluate.add_argument("--batch-size", type=int, help="default: the run's (reproduces its numbers)")
    evaluate.add_argument("--workers", type=int, help="image-reading processes (default: the run's)")
    evaluate.add_argument("--device", default="auto", help=DEVICE_HELP)
    evaluate.set_defaults(run=_evaluate)


def _add_calibrate(commands) -> None:
    calibrate = commands.add_parser(
        "calibrate", help="refit a checkpoint's decision rule on a labelled manifest (a new survey or site)"
    )
    calibrate.add_argument("--checkpoint", required=True)
    calibrate.add_argument("--manifest", required=True, help="labelled images to fit the rule on")
    calibrate.add_argument("--out", required=True, help="the new checkpoint (.pt) or decision record (.json)")
    calibrate.add_argument(
        "--split", choices=SPLIT_CHOICES, default="all", help="rows to fit on (default all)"
    )
    calibrate.add_argument("--policy", choices=DECISION_POLICIES, default="f1")
    calibrate.add_argument("--precision", type=float, default=0.8, help="the precision policy's target")
    calibrate.add_argument("--min-positives", type=int, default=5, help="fewer: borrow the depth's threshold")
    calibrate.add_argument("--rule", choices=DECISION_RULES, default="closure")
    calibrate.add_argument("--threshold", type=float, default=0.5, help="the fixed policy's threshold")
    calibrate.add_argument("--device", default="auto", help=DEVICE_HELP)
    calibrate.set_defaults(run=_calibrate)


def _add_predict(commands) -> None:
    predict = commands.add_parser("predict", help="per-image predictions to a CSV")
    predict.add_argument("--checkpoint", required=True)
    predict.add_argument("--images", required=True, help="a folder of images or a CSV manifest")
    predict.add_argument("--out", required=True, help="the CSV to write")
    predict.add_argument("--batch-size", type=int, help="default: the run's")
    predict.add_argument("--workers", type=int, help="image-reading processes (default: the run's)")
    predict.add_argument("--decision", help=DECISION_HELP)
    predict.add_argument("--threshold", type=float, help="a fixed threshold for every node instead")
    predict.add_argument("--device", default="auto", help=DEVICE_HELP)
    predict.set_defaults(run=_predict)


def _add_tiles(commands) -> None:
    tiles = commands.add_parser(
        "predict-tiles", help="predict over survey rasters: class, probability and uncertainty COGs"
    )
    tiles.add_argument("--checkpoint", required=True)
    tiles.add_argument(
        "--raster", required=True, action="append", help="a GeoTIFF or VRT; repeat to mosaic several"
    )
    tiles.add_argument("--out", required=True, help="output folder")
    tiles.add_argument("--config", help="a YAML file of these settings (tile_size: 224, ...); flags win")
    tiles.add_argument("--tile-size", type=float, help="tile size (default: the model's input size, pixels)")
    tiles.add_argument("--stride", type=float, help="tile stride (default: the tile size, no overlap)")
    tiles.add_argument("--units", choices=["pixels", "crs"], help="of size and stride (default: pixels)")
    tiles.add_argument("--cell", type=int, help="output cell in input pixels (default: the stride)")
    tiles.add_argument("--roi", type=float, nargs=4, metavar=("WEST", "SOUTH", "EAST", "NORTH"))
    tiles.add_argument("--bands", type=int, nargs="+", help="1 or 3 band numbers (default: RGB or band 1)")
    tiles.add_argument("--scale", help="low,high per band mapped to 0..255 (default: dtype or percentiles)")
    tiles.add_argument("--nodata", type=float, help="an extra value marking invalid pixels")
    tiles.add_argument("--max-invalid", type=float, help="skip tiles with a larger invalid share (0.5)")
    tiles.add_argument("--decision", help=DECISION_HELP)
    tiles.add_argument("--threshold", type=float, help="a fixed threshold for every node instead")
    tiles.add_argument(
        "--batch-size", type=int, help="tiles per batch (default: 32 on the CPU, 256 on a GPU)"
    )
    tiles.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        help="auto: bf16 autocast on a GPU that has it, else fp32",
    )
    tiles.add_argument("--compile", action="store_true", help="torch.compile the model (long GPU runs)")
    tiles.add_argument(
        "--workers",
        type=int,
        help="tile-reading processes (default: on a GPU all cores but 2, at most 8; on the CPU none on up "
        "to 4 cores, else one per 4 cores, at most 4)",
    )
    tiles.add_argument("--device", help=DEVICE_HELP)
    tiles.add_argument("--no-progress", action="store_true")
    tiles.set_defaults(run=_predict_tiles)


def _add_chips(commands) -> None:
    chips = commands.add_parser(
        "chips", help="training images from a raster: chips at labelled points or label-raster tiles"
    )
    chips.add_argument("--raster", required=True)
    chips.add_argument("--out", required=True, help="folder for the images, manifest.csv, problems.csv")
    chips.add_argument("--points", help="CSV (x, y, labels[, crs]), GeoJSON or GeoPackage points")
    chips.add_argument("--crs", help="CRS of CSV points without a crs column, e.g. EPSG:4326")
    chips.add_argument("--label-column", default="labels", help="column/property with hierarchy paths")
    chips.add_argument("--label-raster", help="class ids on the raster's grid")
    chips.add_argument("--classes", help="CSV id,path mapping label-raster ids to hierarchy paths")
    chips.add_argument("--size", type=int, default=224, help="chip/tile size in pixels")
    chips.add_argument("--stride", type=int, help="label-raster tiles: stride (default: the size)")
    chips.add_argument("--min-fraction", type=float, default=0.1, help="share of a tile a class needs")
    chips.add_argument("--max-invalid", type=float, default=0.5)
    chips.add_argument("--bands", type=int, nargs="+")
    chips.set_defaults(run=_chips)


def _add_import_points(commands) -> None:
    from seabed_hmc.annotations.patches import EDGE_POLICIES, UNITS
    from seabed_hmc.annotations.points import FORMATS

    command = commands.add_parser(
        "import-points", help="point annotations (CoralNet, CPCe, BIIGLE, SQUIDLE+) -> patches, a manifest"
    )
    command.add_argument("--export", required=True, help="the export: a CSV, a .cpc file or a folder of them")
    command.add_argument("--images", required=True, help="the folder holding the annotated images")
    command.add_argument("--out", required=True, help="folder for patches/, manifest.csv, problems.csv")
    command.add_argument("--format", default="auto", choices=["auto", *FORMATS])
    command.add_argument("--label-map", help="CSV label,path: the tool's label codes -> hierarchy paths")
    command.add_argument("--hierarchy", help="check the mapped paths against this hierarchy file")
    command.add_argument("--size", type=int, default=224, help="patch size in pixels around each point")
    command.add_argument(
        "--edge", default="shift", choices=EDGE_POLICIES, help="a patch over the image border"
    )
    command.add_argument("--unit", default="point", choices=UNITS, help="a patch per point, or per image")
    command.add_argument(
        "--max-bad-fraction", type=float, default=0.05, help="stop above this share of bad points"
    )
    split = "images to the val / test split, where the export has no split column"
    command.add_argument("--val-fraction", type=float, default=0.15, help=f"share of {split}")
    command.add_argument("--test-fraction", type=float, default=0.15, help=f"share of {split}")
    command.add_argument("--seed", type=int, default=0, help="of the image shuffle for the split")
    command.set_defaults(run=_import_points)


def _add_export(commands) -> None:
    from seabed_hmc.annotations.export import TOOLS

    command = commands.add_parser(
        "export", help="predictions -> the annotation tool's suggestions, percent cover, GIS points"
    )
    command.add_argument("predictions", help="the CSV predict wrote")
    command.add_argument(
        "--out", required=True, help="folder for suggestions, cover tables and plots, points"
    )
    command.add_argument(
        "--tool", default="auto", choices=["auto", *TOOLS], help="suggestions' format (auto: the points' own)"
    )
    command.add_argument("--label-map", help="the import's label map (label,path[,label_id])")
    command.add_argument("--top-k", type=int, default=5, help="suggestions per point")
    command.add_argument("--by", nargs="+", default=[], help="columns to total cover by (site, transect)")
    command.add_argument("--level", type=int, help="the hierarchy level of the cover plots (default 2)")
    command.add_argument("--split", help="only these rows (test: a cover error on unseen images)")
    command.set_defaults(run=_export)


def _add_stats(commands) -> None:
    stats = commands.add_parser("stats", help="per-channel mean and std of a set of images")
    stats.add_argument("--images", required=True, help="a folder of images or a CSV manifest")
    stats.add_argument("--size", type=int, default=224)
    stats.add_argument("--max-images", type=int, default=None)
    stats.set_defaults(run=_stats)


def _add_hierarchy(commands) -> None:
    hierarchy = commands.add_parser("hierarchy", help="inspect a hierarchy file")
    hierarchy.add_argument("action", choices=["show", "validate"])
    hierarchy.add_argument("file")
    hierarchy.add_argument("--all", action="store_true", help="list nodes in topological order")
    hierarchy.add_argument("--column", help="path files: the path column, by header name or 0-based index")
    hierarchy.add_argument("--encoding", help="path files: the text encoding (default UTF-8)")
    hierarchy.add_argument(
        "--on-duplicate", choices=["error", "ignore"], help="path files: a path listed twice (default error)"
    )
    hierarchy.set_defaults(run=_hierarchy)


CONFIG_COMMANDS = ("train", "ablate")  # their options are config keys (in the file or with --set)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        with surface(CONFIG if args.command in CONFIG_COMMANDS else args.command):
            return args.run(args)
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError, MemoryError) as error:
        print(f"seabed-hmc {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
