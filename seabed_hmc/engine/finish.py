"""After training: the best weights scored, the decision rule fit, and the run's reports written.

:func:`finish` scores the best epoch's weights on validation and test (as ``evaluate`` scores them),
fits the decision rule on validation and stores it in ``best.pt``, and writes ``metrics.json`` (both
decisions side by side), ``nodes.csv``, ``scores.npz`` (what re-scoring needs without the model),
``reliability.png`` with calibration, and ``problems.csv`` when images were skipped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from seabed_hmc.atomic import write_text_atomic
from seabed_hmc.calibration import expected_calibration_error, reliability_diagram
from seabed_hmc.config import RunConfig
from seabed_hmc.decisions import Decision, fit_configured, fixed_decision
from seabed_hmc.engine.checkpoint import read_model, write_model
from seabed_hmc.engine.data_and_model import PreparedData, inference_model
from seabed_hmc.engine.device import device_of
from seabed_hmc.engine.evaluation import SCORES_FILE, save_scores, score_split

log = logging.getLogger("seabed_hmc")


def finish(
    model,
    inputs,
    hierarchy,
    train_counts,
    data: PreparedData,
    config: RunConfig,
    out: Path,
    best: dict | None = None,
    node_counts: np.ndarray | None = None,
) -> dict:
    """Evaluate the best weights (``best``, or ``best.pt``) on validation and test, fit the decision
    rule on validation (``config.decision``; stored in ``best.pt``), and write metrics.json (each split
    at the fixed ``train.threshold`` and, as ``{split}_decided``, under the fitted rule) and nodes.csv
    (whose ``train_positives`` are ``node_counts``, default ``train_counts``).

    On images this scores the inference model that ``evaluate`` loads from the checkpoint
    (:func:`~seabed_hmc.engine.data_and_model.inference_model`: BatchNorm folded), so ``evaluate`` on the same
    rows prints these numbers exactly; the per-epoch validation in ``log.csv`` scored the training
    model, which can differ from them in the last digits."""
    stored = read_model(out / "best.pt") if best is None else None
    weights, epoch = (stored.model, stored.epoch) if stored is not None else (best["model"], best["epoch"])
    model.load_state_dict(weights)
    if any(split.images is not None for split in inputs.values()):
        norm = model.input_normalisation  # (mean, std) for uint8 images, set by training
        model = inference_model(config, hierarchy, weights).to(device_of(model))
        if norm is not None:
            model.set_input_normalisation(*norm)
    results = {"best_epoch": epoch, "selection_metric": config.train.selection_metric}
    scored = {
        split: score_split(model, inputs[split], config, hierarchy, train_counts, data.problems)
        for split in ("val", "test")
        if split in inputs
    }
    decision = fit_run_decision(config, scored["val"], hierarchy)
    results["decision"] = decision.describe()
    if decision.calibration is not None:
        results["calibration"] = calibration_report(decision, scored, hierarchy, out / "reliability.png")
    for split, result in scored.items():
        results[split] = result.metrics
        results[f"{split}_decided"] = result.decided(decision, hierarchy, train_counts)
    report_split = "test" if "test" in scored else "val"
    counts = train_counts if node_counts is None else node_counts
    report = scored[report_split].report(hierarchy, counts, config.train.threshold, decision)
    report.to_csv(out / "nodes.csv", index=False)
    save_scores(out / SCORES_FILE, scored, train_counts, hierarchy)  # re-scoring needs no model
    if stored is not None:  # the rule travels with the model
        write_model(dataclasses.replace(stored, decision=decision.to_record()), out / "best.pt")
    problems = pd.DataFrame(data.problems, columns=["image", "reason"]).drop_duplicates()
    results["skipped_images"] = len(problems)
    if len(problems):
        problems.to_csv(out / "problems.csv", index=False)
        log.warning("%d images were skipped; see %s", len(problems), out / "problems.csv")
    write_text_atomic(out / "metrics.json", json.dumps(results, indent=2))
    return results


def calibration_report(decision: Decision, scored: dict, hierarchy, figure: Path) -> dict:
    """ECE before and after calibration per split, and the reliability diagram (``figure``)."""
    report, curves = {"method": decision.calibration.method}, {}
    for split, result in scored.items():
        after = decision.probabilities(result.probabilities, hierarchy)
        for name, values in (("before", result.probabilities.numpy()), ("after", after)):
            report[f"ece_{split}_{name}"] = expected_calibration_error(
                values, result.targets, result.mask, hierarchy
            )
            curves[f"{split}, {name}"] = (values, result.targets.numpy(), result.mask.numpy())
    reliability_diagram(figure, curves, hierarchy)
    return report


def fit_run_decision(config: RunConfig, validation, hierarchy) -> Decision:
    """The run's decision rule fit on its validation split; fixed at ``train.threshold`` (with a
    warning saying why) when the split gives nothing to fit on."""
    where = f"val: {len(validation.targets)} images"
    try:
        return fit_configured(
            config.decision, validation.probabilities, validation.targets, validation.mask, hierarchy, where
        )
    except ValueError as error:
        log.warning("decision rule not fitted (%s); predictions use the fixed threshold", error)
        return fixed_decision(hierarchy, config.train.threshold)
