"""Tables, paired statistics and plots for result tables (one row per run), and report files.

Used by the benchmark and study scripts; every number they print comes from a runs table.
"""

from __future__ import annotations

import fcntl
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from seabed_hmc.atomic import atomic_path, write_text_atomic
from seabed_hmc.significance import holm_bonferroni, paired_wilcoxon

START, END = "<!-- tables:start -->", "<!-- tables:end -->"


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of a DataFrame (values as they are, stringified)."""
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def compare_to_control(
    runs: pd.DataFrame,
    metrics: dict[str, str],
    pair_on: Sequence[str],
    method_column: str = "method",
    control: str = "control",
) -> pd.DataFrame:
    """Each method against ``control``, paired on ``pair_on`` (e.g. dataset and seed).

    Per metric: the mean difference (method − control), the ratio of means, the two-sided Wilcoxon
    signed-rank p-value and the Holm-adjusted p-value over the methods compared on that metric.
    """
    methods = [m for m in runs[method_column].unique() if m != control]
    table = compare_pairs(runs, metrics, pair_on, [(m, control) for m in methods], method_column)
    return table.assign(**{method_column: methods})


def compare_pairs(
    runs: pd.DataFrame,
    metrics: dict[str, str],
    pair_on: Sequence[str],
    comparisons: Sequence[tuple[str, str]],
    method_column: str = "method",
) -> pd.DataFrame:
    """Each ``(method, reference)`` of ``comparisons``, paired on ``pair_on``; one row per comparison.

    The cells are as in :func:`compare_to_control`; the Holm adjustment is over the comparisons made
    on each metric.  Rows are named ``"method vs reference"``.
    """
    rows, p_values = [], {key: [] for key in metrics}
    for method, reference in comparisons:
        base = runs[runs[method_column] == reference].set_index(list(pair_on))
        other = runs[runs[method_column] == method].set_index(list(pair_on))
        pairs = other.index.intersection(base.index)
        row = {method_column: f"{method} vs {reference}", "pairs": len(pairs)}
        for key, label in metrics.items():
            test = paired_wilcoxon(
                other.loc[pairs, key].to_numpy(float), base.loc[pairs, key].to_numpy(float)
            )
            p_values[key].append(test.p_value)
            base_mean = base.loc[pairs, key].mean()
            ratio = (
                f"x{other.loc[pairs, key].mean() / base_mean:.2f}" if base_mean > 1e-9 else f"{reference} 0"
            )
            row[label] = f"{test.mean_difference:+.4f} ({ratio}), p={test.p_value:.3g}"
        rows.append(row)
    for key, label in metrics.items():
        adjusted = holm_bonferroni(np.array(p_values[key], dtype=float)) if p_values[key] else []
        for row, p in zip(rows, adjusted, strict=True):
            row[label] += f", Holm {p:.3g}"
    return pd.DataFrame(rows)


def mean_table(
    runs: pd.DataFrame, by: Sequence[str], metrics: dict[str, str], digits: int = 4
) -> pd.DataFrame:
    """Mean (and, with more than one run, ± sample std) of each metric per group."""
    rows = []
    for key, group in runs.groupby(list(by), sort=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        row["runs"] = len(group)
        for column, label in metrics.items():
            values = group[column].astype(float)
            text = f"{values.mean():.{digits}f}"
            if len(values) > 1:
                text += f" ± {values.std(ddof=1):.{digits}f}"
            row[label] = text
        rows.append(row)
    return pd.DataFrame(rows)


def recall_by_depth(runs: pd.DataFrame, column: str = "recall_by_depth") -> pd.DataFrame:
    """The per-depth recall JSON column of a runs table as a (runs, depths) frame."""
    return pd.DataFrame(
        [{int(k): v for k, v in json.loads(text).items()} for text in runs[column]]
    ).sort_index(axis=1)


def depth_plot(groups: dict[str, pd.DataFrame], path: Path, title: str, xlabel: str) -> None:
    """Mean recall by depth, one line per group of runs, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for label, runs in groups.items():
        mean = recall_by_depth(runs).mean(axis=0)
        axis.plot(mean.index, mean.to_numpy(), marker="o", label=label)
    axis.set_xlabel(xlabel)
    axis.set_ylabel("macro recall over nodes at that depth")
    axis.set_title(title)
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_between_markers(path: Path, generated: str, title: str) -> None:
    """Replace the text between the table markers of ``path`` (hand-written text outside is kept)."""
    text = path.read_text() if path.exists() else f"# {title}\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        text = text.rstrip() + f"\n\n{START}\n{END}\n"
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    write_text_atomic(path, before + START + "\n\n" + generated + "\n\n" + END + after)


def append_row(path: Path, row: dict, key: Sequence[str] | None = None, replace: bool = False) -> bool:
    """Append one row to a CSV table safely: under an exclusive lock (parallel writers), written to a
    temporary file and renamed into place (a reader never sees a half-written table).

    With ``key`` (column names), a row whose key values are already in the table is not appended and
    False is returned: two resumable studies that picked the same run keep one row, not two.  With
    ``replace`` as well, the new row takes the old one's place instead (a run made again, e.g. to add a
    metric) and True is returned.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(path.suffix + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        table = pd.read_csv(path) if path.exists() else pd.DataFrame()
        new = pd.DataFrame([row])
        if key is not None and len(table) and set(key) <= set(table.columns):
            wanted = tuple(_key_text(row.get(column)) for column in key)
            present = list(table[list(key)].map(_key_text).itertuples(index=False, name=None))
            same = [i for i, values in enumerate(present) if values == wanted]
            if same and not replace:
                return False
        else:
            same = []
        if same:  # the new row where the first old one was; the table keeps its order
            rest = table.drop(index=table.index[same])
            table = pd.concat([rest.iloc[: same[0]], new, rest.iloc[same[0] :]], ignore_index=True)
        else:
            table = pd.concat([table, new], ignore_index=True)
        with atomic_path(path) as temporary:
            table.to_csv(temporary, index=False)
    return True


def _key_text(value) -> str:
    """A key cell as text, so that 5, 5.0 and "5" match and a missing cell matches an empty one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
