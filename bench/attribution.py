"""Attribution drift (issue 47) on a real dataset against the exact computation, and what explaining costs.

    python -m bench.attribution [--rows 20000] [--rows-per-batch 5000]

Data: NannyML's bundled US census employment data for Massachusetts (ACS PUMS: reference 2015, analysis by year,
then only its people aged 30 to 44; ``load_us_census_ma_employment_data``, run in bench/cbpe.py's NannyML
virtualenv). A LightGBM classifier is fit on the reference's 16 inputs; the ``shap`` package's ``TreeExplainer``
gives the SHAP values of ``--rows`` rows of the reference and of each part (a seeded sample: shap takes ~1 ms a row
here). The reference is a baseline built from a table of the reference rows and their SHAP values (``build_baseline(...,
attribution_prefix="shap_")``, what ``baseline build --attribution-column-prefix`` runs). Each analysis year goes
through the processor's profile in batches (the decoded columns ``attribution.<feature>``) and is compared with it:
otel-ml's importances (mean |attribution|: the windows' sums over their counts) against numpy's on the raw SHAP
values, and what the column's KLL sketch alone would give (``sketched_mean_absolute``, what a first version read),
and otel-ml's NDCG against the NDCG
of the exact importances. Then the serving cost: the
wrapped model's ``predict_proba`` with the explainer against without (``ModelMonitor.wrap``, same run, alternated),
and at the processor what attributions cost beyond the columns themselves (the exact importance's Σ|x|):
``ModelProfile.update`` of 512-row batches of 16 inputs and 16 attribution columns against 16 inputs and 16 more
plain columns, alternated.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import shap
from opentelemetry.sdk.trace import TracerProvider

from bench.cbpe import nannyml_python
from otel_ml.analyze.attribution import ndcg
from otel_ml.analyze.drift import DriftConfig, compare
from otel_ml.decode.batch import ColumnarBatch
from otel_ml.instrument import ModelMonitor
from otel_ml.profile.baseline import build_baseline
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.sketch import NumericProfile

CENSUS_SCRIPT = r"""
import sys
import nannyml as nml
out = sys.argv[1]
ref, ana, targets = nml.load_us_census_ma_employment_data()
ref.to_parquet(out + "/reference.parquet"); ana.to_parquet(out + "/analysis.parquet")
"""
INPUTS = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC", "NATIVITY", "DEAR", "DEYE", "DREM",
          "SEX", "RAC1P"]


def census(work: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    subprocess.run([str(nannyml_python()), "-c", CENSUS_SCRIPT, str(work)], check=True, capture_output=True)
    return tuple(pd.read_parquet(work / f"{name}.parquet") for name in ("reference", "analysis"))  # type: ignore


def sketched_mean_absolute(column: NumericProfile) -> float:
    """Mean |x| from a KLL sketch's retained items and weights: within ε·(max − min) of the exact one (ε its rank
    error), which is what the processor's exact Σ|x| replaced."""
    values, weights = column.weighted_items()
    return float(np.abs(values) @ weights / weights.sum())


def numeric(df: pd.DataFrame) -> pd.DataFrame:
    return df[INPUTS].astype(float)


def positive_shap(explainer: shap.TreeExplainer, X: pd.DataFrame) -> np.ndarray:
    values = explainer.shap_values(X)
    arr = np.stack(values, axis=-1) if isinstance(values, list) else np.asarray(values)
    return arr[:, :, -1] if arr.ndim == 3 else arr


def profiled(X: pd.DataFrame, attributions: np.ndarray, rows_per_batch: int) -> ModelProfile:
    """The rows as the processor profiles them after decoding: inputs and ``attribution.<feature>`` columns."""
    profile = ModelProfile("employment", "")
    kinds: dict[str, str] = {}
    for part in np.array_split(np.arange(len(X)), max(1, len(X) // rows_per_batch)):
        columns = {f: X[f].to_numpy()[part] for f in INPUTS}
        columns.update({f"attribution.{f}": attributions[part, j] for j, f in enumerate(INPUTS)})
        batch = ColumnarBatch("employment", "", len(part), np.full(len(part), 10**18, np.int64),
                              np.ones(len(part)), numeric=columns)
        kinds.update(dict.fromkeys(columns, "numeric"))
        profile.update(batch, kinds)
    return profile


def fitted(reference: pd.DataFrame) -> lgb.LGBMClassifier:
    return lgb.LGBMClassifier(n_estimators=100, num_leaves=31, verbose=-1).fit(numeric(reference),
                                                                               reference.employed)


def accuracy(model: lgb.LGBMClassifier, reference: pd.DataFrame, analysis: pd.DataFrame, rows: int,
             rows_per_batch: int) -> list[str]:
    X = numeric(reference.sample(min(rows, len(reference)), random_state=0))
    explainer = shap.TreeExplainer(model)
    ref_shap = positive_shap(explainer, X)
    with tempfile.TemporaryDirectory() as d:
        table = Path(d) / "reference.parquet"
        X.assign(**{f"shap_{f}": ref_shap[:, j] for j, f in enumerate(INPUTS)}).to_parquet(table)
        baseline = build_baseline(table, "employment", attribution_prefix="shap_")
    exact_ref = dict(zip(INPUTS, np.abs(ref_shap).mean(axis=0)))
    lines = ["| year | rows | NDCG otel-ml | NDCG exact | decision | largest \\|importance − exact\\| / exact | "
             "the same from the sketch alone |", "|---|---|---|---|---|---|---|"]
    # Each year as it came (the census barely moves), then a shift of the population served: only people aged 30
    # to 45, so age, the model's driver, moves little between them.
    narrow = analysis[(analysis.AGEP >= 30) & (analysis.AGEP < 45)]
    for year, of_year in [*analysis.groupby("year"), ("all, aged 30-44", narrow)]:
        Xa = numeric(of_year.sample(min(rows, len(of_year)), random_state=0))
        shap_a = positive_shap(explainer, Xa)
        current = profiled(Xa, shap_a, rows_per_batch)
        report = compare(baseline, current, DriftConfig())
        a = report.attribution
        assert a is not None
        exact_cur = dict(zip(INPUTS, np.abs(shap_a).mean(axis=0)))
        worst = max(abs(i.current - exact_cur[i.feature]) / exact_cur[i.feature] for i in a.importances)
        columns = {f: current.features[f"attribution.{f}"] for f in INPUTS}
        sketched = max(abs(sketched_mean_absolute(c) - exact_cur[f]) / exact_cur[f]  # type: ignore[arg-type]
                       for f, c in columns.items())
        lines.append(f"| {year} | {len(Xa):,} | {a.ndcg:.4f} | {ndcg(exact_ref, exact_cur):.4f} | "
                     f"{'drift' if a.detected else 'no drift' if a.detected is False else a.withheld_reason} | "
                     f"{worst:.1e} | {sketched:.1e} |")
    top = sorted(exact_ref, key=exact_ref.get, reverse=True)[:5]  # type: ignore[arg-type]
    return [f"Reference ranking (exact mean |SHAP|): {', '.join(f'{f} {exact_ref[f]:.3f}' for f in top)}, ...", "",
            *lines]


def serving_cost(model: lgb.LGBMClassifier, reference: pd.DataFrame, batch_rows: int = 512, rounds: int = 7) -> str:
    """``predict_proba`` of the wrapped model on ``batch_rows`` rows, with and without the explainer."""
    X = numeric(reference)
    provider = TracerProvider()  # spans are made and dropped: the cost is the instrumentation's and shap's
    plain = ModelMonitor("employment", tracer_provider=provider).wrap(model)
    explained = ModelMonitor("employment", tracer_provider=provider).wrap(model, explainer=shap.TreeExplainer(model))
    rows = X.iloc[:batch_rows]
    times: dict[str, list[float]] = {"plain": [], "explained": []}
    for _ in range(rounds):
        for name, wrapped in (("plain", plain), ("explained", explained)):
            t = time.perf_counter()
            for _ in range(5):
                wrapped.predict_proba(rows.copy())  # a new object: never counted as the same predictions again
            times[name].append((time.perf_counter() - t) / 5 / batch_rows)
    p, e = (float(np.median(times[k])) for k in ("plain", "explained"))
    return (f"`wrap(model).predict_proba` of {batch_rows} rows: {p * 1e6:.1f} µs per row; with "
            f"`explainer=shap.TreeExplainer(model)`: {e * 1e6:.1f} µs per row, {e / p:.1f}× (median of {rounds} "
            "alternated rounds; the explainer's time is outside the span's latency)")


def ingest_cost(rows: int = 512, rounds: int = 7, batches: int = 200) -> str:
    """``ModelProfile.update`` per row: 16 inputs + 16 ``attribution.*`` columns against 16 inputs + 16 plain ones
    (the same numbers): what the importance's Σ|x| adds beyond profiling the columns."""
    rng = np.random.default_rng(0)
    values = {f"x{j}": rng.normal(0, 1, rows) for j in range(32)}
    plain = {**{f: values[f"x{j}"] for j, f in enumerate(INPUTS)},
             **{f"more.{f}": values[f"x{16 + j}"] for j, f in enumerate(INPUTS)}}
    attributed = {**{f: values[f"x{j}"] for j, f in enumerate(INPUTS)},
                  **{f"attribution.{f}": values[f"x{16 + j}"] for j, f in enumerate(INPUTS)}}
    times: dict[str, list[float]] = {"plain": [], "attributed": []}
    for _ in range(rounds):
        for name, columns in (("plain", plain), ("attributed", attributed)):
            profile, kinds = ModelProfile("m", ""), dict.fromkeys(columns, "numeric")
            batch = ColumnarBatch("m", "", rows, np.zeros(rows, np.int64), np.ones(rows), numeric=columns)
            t = time.perf_counter()
            for _ in range(batches):
                profile.update(batch, kinds)
            times[name].append((time.perf_counter() - t) / batches / rows)
    p, a = (float(np.median(times[k])) for k in ("plain", "attributed"))
    return (f"`ModelProfile.update` of {rows}-row batches, 16 inputs + 16 more columns: {p * 1e6:.3f} µs per row "
            f"as plain features, {a * 1e6:.3f} µs as `attribution.*` ({a / p:.3f}×; median of {rounds} alternated "
            "rounds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="rows explained of the reference and of each year")
    parser.add_argument("--rows-per-batch", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        reference, analysis = census(Path(d))
    model = fitted(reference)
    print("\n".join(accuracy(model, reference, analysis, args.rows, args.rows_per_batch)))
    print()
    print(serving_cost(model, reference))
    print()
    print(ingest_cost())


if __name__ == "__main__":
    main()
