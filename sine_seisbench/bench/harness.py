"""``sine benchmark``: SINE against PhaseNet, EQTransformer and the classical chain, reproducibly.

Stages (each resumable per model and dataset: results are cached as JSON under ``OUT/raw`` and skipped when present,
unless ``force``):

1. ``picks``: SeisBench pick-benchmark tasks 1-3 on labelled datasets (``DATA/datasets/*``) and a simulated set.
2. ``continuous``: ``classify`` over real continuous records with manual picks (PNW) or catalogued events
   (Ridgecrest, with PhaseNO's published picks alongside).
3. ``location``: SINE's joint estimates against picker → association → grid-search location → ML on simulated
   events, and 4. their degradation with fewer stations and more noise (the inter-task dependence claim).
5. ``speed``: annotate throughput of every model on the same records in one run, ratios to PhaseNet.
6. ``iceland``, 7. ``colombia``, 8. ``simulated_low_snr``: all models side by side on multi-station records
   (:mod:`sine_seisbench.bench.multistation`): agreement with QuakeMigrate's automatic picks at an equal false-pick
   rate, agreement with the teacher's and SeisMonitor's picks on the held-out last 2 h of the Colombia records, and
   P recall at a fixed precision on simulated low-SNR events.
9. ``real_events``: located events of SINE and of the pickers' chains on real records
   (:mod:`sine_seisbench.bench.real_events`): QuakeMigrate's automatic Iceland catalogue, two ComCat events with
   StationXML, ComCat's Ridgecrest catalogue against a chance level, the automatic Colombia catalogues, and the
   events outside physical bounds on every record.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import seisbench
import seisbench.data as sbd
import seisbench.models as sbm

from ..data.layout import DataLayout, as_layout
from ..geometry import station_key
from ..loader import UNTRAINED, load_weights
from ..model import DEFAULT_WEIGHTS
from ..progress import progress
from . import continuous as cont
from . import multistation as ms
from . import real_events as real

STAGES = (
    "picks",
    "continuous",
    "location",
    "speed",
    "iceland",
    "colombia",
    "simulated_low_snr",
    "real_events",
)
PUBLISHED = {"PhaseNet": ("PhaseNet", "original"), "EQTransformer": ("EQTransformer", "original")}
#: SINE's variants: the weights' defaults, and the same weights with the station graph changing the picks
SINE_VARIANTS = {"SINE": {}, "SINE-graph": {"graph_picks": True}}


def is_sine(name: str) -> bool:
    """Whether a benchmark model name is one of SINE's variants (they need station coordinates)."""
    return name in SINE_VARIANTS


SUMMARY_START = "<!-- benchmark-summary:start -->"
SUMMARY_END = "<!-- benchmark-summary:end -->"


def seed_cache(data: DataLayout | str | Path) -> None:
    """Copies the published weights of the data's ``seisbench_cache`` (``DATA/seisbench_cache``) into
    SeisBench's cache where missing, so ``from_pretrained`` works offline (users with internet download them
    instead).

    :param data: The benchmark data's :class:`~sine_seisbench.data.layout.DataLayout`, or its root folder.
    """
    src = as_layout(data).seisbench_cache / "models" / "v3"
    if not src.is_dir():
        return
    for path in src.rglob("*"):
        if path.is_file():
            dst = Path(seisbench.cache_model_root) / path.relative_to(src)
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dst)


def load_models(names: list[str], sine_weights: str | None) -> dict:
    """The benchmark's models by name: SINE's variants with ``sine_weights`` through the one weights loader
    (:func:`sine_seisbench.loader.load_weights`; None or ``"untrained"``: a new, randomly initialised SINE per
    variant), the published pickers from SeisBench."""
    models = {}
    for name in names:
        if is_sine(name):
            models[name] = load_weights(sine_weights or UNTRAINED, "--sine-weights")
            models[name].default_args.update(SINE_VARIANTS[name])
        elif name in PUBLISHED:
            cls_name, weights = PUBLISHED[name]
            models[name] = getattr(sbm, cls_name).from_pretrained(weights)
        else:
            raise ValueError(
                f"Unknown model {name!r}; choose from {', '.join([*SINE_VARIANTS, *PUBLISHED])}"
            )
        models[name].eval()
    return models


class Cache:
    """JSON results per (stage, model, dataset) so that an interrupted run resumes.

    :param versions: Model name -> version tag (e.g. a digest of the weights): a key part naming the model is
                     stored as ``NAME@TAG``, so results of other weights are never reused.
    """

    def __init__(self, out: Path, force: bool, versions: dict[str, str] | None = None) -> None:
        self.dir = out / "raw"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.force = force
        self.versions = versions or {}

    def get(self, *key: str, compute):
        key = tuple(
            "+".join(f"{t}@{self.versions[t]}" if t in self.versions else t for t in k.split("+"))
            for k in key
        )
        path = self.dir / ("__".join(k.replace("/", "_") for k in key) + ".json")
        if path.exists() and not self.force:
            return json.loads(path.read_text())
        value = compute()
        path.write_text(json.dumps(value, default=float, indent=1))
        return value


def weights_digest(model) -> str:
    """Ten hex digits of SHA-1 over a model's tensors (names, shapes and values)."""
    digest = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:10]


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3g}"
    return str(v)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def stage_picks(
    models,
    data: DataLayout | str | Path,
    datasets: list[str] | None,
    cache: Cache,
    seed: int,
    quick: bool,
    log,
):
    from .pick_tasks import evaluate_pick_tasks

    layout = as_layout(data)
    rows = []
    folders = sorted(p for p in layout.datasets.glob("*") if (p / "metadata.csv").exists())
    if datasets:
        folders = [p for p in folders if p.name in datasets]
    if not folders:
        log(f"picks: no labelled datasets under {layout.datasets}; stage skipped")
    for folder in folders:
        ds = sbd.WaveformDataset(folder, component_order="ZNE", sampling_rate=100)
        for name, model in models.items():
            result = cache.get(
                "picks",
                name,
                folder.name,
                compute=lambda model=model, ds=ds: evaluate_pick_tasks(model, ds, seed=seed),
            )
            rows.append({**_flatten(result), "dataset": folder.name, "model": name})
    return rows


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (int, float, str)) or v is None:
            out[key] = v
    return out


def _coordinates_from_csv(stations_csv: Path, stream) -> pd.DataFrame:
    from ..data.simulate import load_stations

    table = load_stations(stations_csv)
    keys = {(tr.stats.network, tr.stats.station) for tr in stream}
    return table[[(n, s) in keys for n, s in zip(table.network, table.station, strict=True)]]


def stage_continuous(models, data: DataLayout | str | Path, cache: Cache, quick: bool, log, tt):
    layout = as_layout(data)
    rows = []
    pnw = layout.pnw
    stations_csv = layout.western_us_stations
    if pnw.is_dir() and stations_csv.exists():
        stream = cont.read_records(pnw)
        if quick:  # half an hour, from 2 h in where the record is long enough (an active period of the PNW day)
            t0 = min(tr.stats.starttime for tr in stream)
            t1 = max(tr.stats.endtime for tr in stream)
            start = t0 + 2 * 3600 if t1 - t0 > 2.5 * 3600 else t0
            stream.trim(start, start + 1800)
        t0, t1 = min(tr.stats.starttime for tr in stream), max(tr.stats.endtime for tr in stream)
        refs = [r for r in cont.pnw_references(pnw) if t0 + 5 <= r.time <= t1 - 5]
        inventory = _coordinates_from_csv(stations_csv, stream)
        for name, model in models.items():

            def compute(model=model, name=name):
                kw = {"inventory": inventory, "min_stations": 2} if is_sine(name) else {}
                picks = model.classify(stream, **kw).picks
                return cont.match_picks(picks, refs, 0.5)

            rows.append(
                {
                    "record": "pnw_2022-02-06" + (" (30 min)" if quick else ""),
                    "model": name,
                    "tolerance_s": 0.5,
                    **cache.get(
                        "continuous", name, "pnw" + ("_quick" if quick else ""), compute=compute
                    ),
                }
            )
    else:
        log(f"continuous: {pnw} or {stations_csv} not found; PNW skipped")

    rc = layout.ridgecrest
    if rc.is_dir():
        stream = cont.read_records(rc)
        if quick:
            t0 = min(tr.stats.starttime for tr in stream)
            stream.trim(t0, t0 + 900)
        frame = cont.phaseno_stations(rc)
        coords = {
            f"{r.network}.{r.station}.": (r.latitude, r.longitude, 0.0) for r in frame.itertuples()
        }
        refs = cont.ridgecrest_references(rc, stream, coords, tt)
        t0, t1 = min(tr.stats.starttime for tr in stream), max(tr.stats.endtime for tr in stream)
        refs = [r for r in refs if t0 + 5 <= r.time <= t1 - 5]
        stations = {station_key(tr.id) for tr in stream}
        pickers = dict(models)
        for name, model in pickers.items():

            def compute(model=model, name=name):
                kw = {"inventory": frame, "min_stations": 2} if is_sine(name) else {}
                picks = model.classify(stream, **kw).picks
                return {
                    **cont.match_picks(picks, refs, 1.0),
                    **cont.events_seen(picks, refs, 1.0, 2),
                }

            rows.append(
                {
                    "record": "ridgecrest_2019-07-06T08" + (" (15 min)" if quick else ""),
                    "model": name,
                    "tolerance_s": 1.0,
                    **cache.get(
                        "continuous",
                        name,
                        "ridgecrest" + ("_quick" if quick else ""),
                        compute=compute,
                    ),
                }
            )
        phaseno = [p for p in cont.phaseno_picks(rc, stations) if t0 <= p.peak_time <= t1]
        rows.append(
            {
                "record": "ridgecrest_2019-07-06T08" + (" (15 min)" if quick else ""),
                "model": "PhaseNO (published picks)",
                "tolerance_s": 1.0,
                **cont.match_picks(phaseno, refs, 1.0),
                **cont.events_seen(phaseno, refs, 1.0, 2),
            }
        )
    else:
        log(f"continuous: {rc} not found; Ridgecrest skipped")
    return rows


def simulated_test_set(
    sim_data: Path | None,
    n_events: int,
    tmp: Path,
    tt,
    geometry: str = "demo",
    data_dir: DataLayout | str | Path | None = None,
) -> sbd.WaveformDataset:
    """Simulated test events on one station geometry: ``"demo"``, ``"central_italy"`` or ``"iceland"``.

    ``"demo"``: the test split of ``sim_data`` when given, else a fresh small set on the 12-station demo network
    (coloured Gaussian noise, as before). ``"central_italy"`` (the 60 stations of
    ``DATA/stations/central_italy_stations_2016.dat``) and ``"iceland"`` (the 12 stations of
    ``DATA/events/iceland_qm_2014-08-24/stations.csv``): events drawn over the stations' bounding box padded by
    10 % of its extent (+0.02°), depths 2-20 km, recorded at their 16 nearest stations within 120 km, with real
    noise from :func:`~sine_seisbench.data.simulate.default_noise_paths` where ``data_dir`` has it. Each geometry
    has its own seed, so event ids differ between geometries.

    :param data_dir: The benchmark data (a :class:`~sine_seisbench.data.layout.DataLayout` or its root folder);
                     needed by the real geometries only.
    :raises ValueError: For an unknown geometry, or a real geometry without ``data_dir``.
    :raises FileNotFoundError: When the station list of a real geometry is not in ``data_dir``.
    """
    from ..data.simulate import (
        STATION_COLUMNS,
        SimulationConfig,
        default_noise_paths,
        load_station_list,
        simulate_dataset,
    )
    from ..demo import CENTRE, demo_network

    station_lists = {  # the data layout's station list; None: the demo network
        "demo": None,
        "central_italy": lambda layout: layout.central_italy_stations,
        "iceland": lambda layout: layout.iceland / "stations.csv",
    }
    if geometry not in station_lists:
        raise ValueError(
            f"Unknown geometry {geometry!r}; choose one of {', '.join(station_lists)}."
        )
    if geometry != "demo" and data_dir is None:
        raise ValueError(
            f"The {geometry} geometry needs data_dir: the benchmark data's root folder or a DataLayout."
        )
    noise_paths: list[str] = []
    if geometry == "demo":
        if sim_data is not None:
            ds = sbd.WaveformDataset(sim_data, component_order="ZNE", sampling_rate=100)
            return ds.test()
        stations = demo_network(12, seed=11)
        region = (CENTRE[0] - 0.3, CENTRE[0] + 0.3, CENTRE[1] - 0.3, CENTRE[1] + 0.3)
    else:
        layout = as_layout(data_dir)
        path = station_lists[geometry](layout)
        if not path.exists():
            raise FileNotFoundError(f"Station list of the {geometry} geometry not found: {path}")
        stations = load_station_list(path)[STATION_COLUMNS]
        lat, lon = stations["latitude"], stations["longitude"]
        pad_lat = 0.1 * float(lat.max() - lat.min()) + 0.02
        pad_lon = 0.1 * float(lon.max() - lon.min()) + 0.02
        region = (
            float(lat.min()) - pad_lat,
            float(lat.max()) + pad_lat,
            float(lon.min()) - pad_lon,
            float(lon.max()) + pad_lon,
        )
        if layout.root.is_dir():
            noise_paths = default_noise_paths(layout)
    seed = 1234 + list(station_lists).index(geometry)
    path = simulate_dataset(
        tmp / f"sim_test_{geometry}",
        stations,
        region=region,
        noise_paths=noise_paths or None,
        config=SimulationConfig(
            n_events=n_events,
            max_stations=16,
            samples=6000,
            seed=seed,
            p_sample_range=(1500, 2500),
            z_only_fraction=0.0,
            gap_fraction=0.0,
        ),
        tt=tt,
    )
    return sbd.WaveformDataset(path, component_order="ZNE", sampling_rate=100)


def stage_location(models, test_sets, cache: Cache, quick: bool, tt, seed: int, out: Path, log):
    """SINE, the pickers' chains (greedy and PyOcto association) and SINE's picks through the chain on the
    simulated events of every geometry; degradations: stations removed (0.5 in the quick suite), noise added
    (8x the pre-event RMS) and a third of the chains' picks removed with 0.1 s jitter.

    :param test_sets: Geometry name → dataset (a single dataset counts as ``"demo"``).
    :return: Summary rows per geometry, method and degradation, and the per-event rows.
    """
    from .location import location_benchmark, summarise

    if "SINE" not in models:
        log("location: SINE not among --models; stage skipped")
        return [], []
    if not isinstance(test_sets, dict):
        test_sets = {"demo": test_sets}
    pickers = {k: v for k, v in models.items() if not is_sine(k)}
    max_events = 3 if quick else 40
    drops = (0.0, 0.5) if quick else (0.0, 0.25, 0.5, 0.75)
    noises = (0.0, 8.0) if quick else (0.0, 2.0, 8.0, 32.0)
    jitters = (0.1,) if quick else (0.1, 0.3, 1.0)
    conditions = [(0.0, 0.0)] + [(d, 0.0) for d in drops[1:]] + [(0.0, n) for n in noises[1:]]
    mode = "quick" if quick else "full"

    rows = []
    for geometry, test_set in test_sets.items():

        def compute(test_set=test_set, geometry=geometry):
            found = location_benchmark(
                test_set,
                models["SINE"],
                pickers,
                tt,
                max_events,
                seed=seed,
                pick_jitters=jitters,
                conditions=conditions,
                geometry=geometry,
            )
            return [{k: (str(v) if k == "event" else v) for k, v in r.items()} for r in found]

        rows += cache.get("location", "+".join(models), f"{mode}-{geometry}", compute=compute)
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "location_events.csv", index=False)
    if frame.empty:
        return [], rows
    summary = []
    if "pick_jitter_s" not in frame:
        frame["pick_jitter_s"] = 0.0
    frame["pick_jitter_s"] = frame["pick_jitter_s"].fillna(0.0)
    keys = ["geometry", "method", "drop_fraction", "noise_factor", "pick_jitter_s"]
    for values, group in frame.groupby(keys, sort=False):
        summary.append(
            {**dict(zip(keys, values, strict=True)), **summarise(group.to_dict("records"))}
        )
    table = pd.DataFrame(summary)
    for n, geometry in enumerate(test_sets):
        part = table[table.geometry == geometry]
        _plot_dependence(part, out / f"dependence_{geometry}.png")
        if n == 0:
            _plot_dependence(part, out / "dependence.png")
    return summary, rows


def _plot_dependence(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if summary.empty or "epicentral_median_km" not in summary:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    summary = summary[summary.pick_jitter_s == 0]
    for method, g in summary.groupby("method"):
        a = g[g.noise_factor == 0].sort_values("drop_fraction")
        axes[0].plot(a.drop_fraction, a.epicentral_median_km, "o-", label=method)
        b = g[g.drop_fraction == 0].sort_values("noise_factor")
        axes[1].plot(b.noise_factor, b.epicentral_median_km, "o-", label=method)
    axes[0].set_xlabel("fraction of stations removed")
    axes[1].set_xlabel("added noise (x pre-event RMS)")
    for ax in axes:
        ax.set_ylabel("median epicentral error (km)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def stage_speed(models, data: DataLayout | str | Path, quick: bool, log):
    layout = as_layout(data)
    rc = layout.pnw
    stations_csv = layout.western_us_stations
    if not rc.is_dir():
        log("speed: no continuous records; stage skipped")
        return []
    stream = cont.read_records(rc)
    if quick:
        t0 = min(tr.stats.starttime for tr in stream)
        stream.trim(t0, t0 + 1800)
    inventory = _coordinates_from_csv(stations_csv, stream)
    station_hours = sum(
        (tr.stats.endtime - tr.stats.starttime) / 3600
        for tr in stream
        if tr.stats.channel.endswith("Z")
    )
    rows = []
    for name, model in models.items():
        kw = {"inventory": inventory} if is_sine(name) else {}
        model.annotate(
            stream.slice(stream[0].stats.starttime, stream[0].stats.starttime + 120), **kw
        )
        t = time.perf_counter()
        model.annotate(stream, **kw)
        seconds = time.perf_counter() - t
        rows.append(
            {
                "model": name,
                "station_hours": station_hours,
                "seconds": seconds,
                "station_hours_per_s": station_hours / seconds,
            }
        )
    base = next((r["station_hours_per_s"] for r in rows if r["model"] == "PhaseNet"), None)
    for r in rows:
        r["ratio_to_PhaseNet"] = r["station_hours_per_s"] / base if base else math.nan
    return rows


def _iceland_section(
    models, data: DataLayout | Path, cache: Cache, out: Path, log, summary: list[str]
) -> list[str]:
    rows = ms.stage_iceland(models, data, cache, log)
    if not rows:
        return []
    pd.DataFrame(rows).to_csv(out / "iceland.csv", index=False)
    summary.append(
        "Iceland, agreement with QuakeMigrate at 0.1 unmatched picks per station-window:\n\n"
        + markdown_table(rows, ["model", "phase", "agreement"])
    )
    cols = [
        "model",
        "phase",
        "qm_picks",
        "threshold",
        "agreement",
        "unmatched_per_window",
        "residual_mean_s",
        "residual_std_s",
        "agreement_at_0.3",
        "unmatched_per_window_at_0.3",
    ]
    return [
        "## Iceland: agreement with QuakeMigrate's automatic picks at an equal false-pick rate",
        "",
        f"{rows[0]['events']} events, {rows[0]['station_windows']} station-windows (12 stations, 32.5 s). "
        "QuakeMigrate's picks are automatic, not ground truth: *agreement* is the fraction of its picks "
        f"(all those inside each window, neighbouring events' included) with a model pick of the same station and "
        f"phase within {ms.ICELAND_TOLERANCE_S} s. Each model's threshold is the lowest (grid 0.02-0.98, step "
        f"0.01) giving at most **{ms.ICELAND_FALSE_RATE} unmatched picks per station-window** and phase (a pick "
        f"with no QuakeMigrate pick within {ms.ICELAND_TOLERANCE_S} s; some are real arrivals QuakeMigrate did "
        "not pick); agreement at the default threshold 0.3 alongside. Residual = model - QuakeMigrate (s).",
        "",
        markdown_table(rows, cols),
        "",
    ]


def _colombia_section(
    models, data: DataLayout | Path, cache: Cache, quick: bool, out: Path, log
) -> list[str]:
    rows = ms.stage_colombia(models, data, cache, quick, log)
    if not rows:
        return []
    pd.DataFrame(rows).to_csv(out / "colombia.csv", index=False)
    cols = ["span", "reference", "model"] + [
        f"{ph}_{k}"
        for ph in ("P", "S")
        for k in ("references", "matched_fraction", "picks", "unmatched")
    ]
    return [
        "## Colombia (Mesetas aftershocks, held-out last 2 h): agreement with automatic picks",
        "",
        f"{rows[0]['span']} of 2019-12-24/25 at the 7 HH stations (the first 4 h are training data and are never "
        "read; the accelerometer CLEJA has no data after 23:00). Every model at threshold "
        f"{ms.DEFAULT_THRESHOLD}; *matched fraction*: reference picks with a model pick of the same station and "
        f"phase within {ms.COLOMBIA_TOLERANCE_S} s. References (all automatic): the teacher, PhaseNet 'original' "
        "at 0.3 on the same data (PhaseNet against it is 1 by construction), and SeisMonitor's PhaseNet and "
        f"EQTransformer picks of the span (repeats within {ms.DEDUPLICATE_S} s merged).",
        "",
        markdown_table(rows, cols),
        "",
    ]


def _low_snr_section(
    models,
    data: DataLayout | Path,
    cache: Cache,
    quick: bool,
    tt,
    seed: int,
    tmp,
    out: Path,
    log,
    summary: list[str],
) -> list[str]:
    rows = ms.stage_simulated_low_snr(models, data, cache, quick, tt, seed, Path(tmp), log)
    if not rows:
        return []
    pd.DataFrame(rows).to_csv(out / "simulated_low_snr.csv", index=False)
    summary.append(
        f"Simulated low-SNR events, P recall at precision >= {ms.TARGET_PRECISION}:\n\n"
        + markdown_table(rows, ["model", "P_recall", "P_precision", "threshold"])
    )
    cols = [
        "model",
        "events",
        "true_P",
        "threshold",
        "P_recall",
        "P_precision",
        "P_residual_mean_s",
        "P_residual_std_s",
        "P_max_precision",
        "P_recall_at_0.3",
        "P_precision_at_0.3",
    ]
    r0 = rows[0]
    return [
        f"## Simulated low-SNR events: P recall at precision >= {ms.TARGET_PRECISION}",
        "",
        f"{r0['events']} simulated events (M1-4.5 by Gutenberg-Richter, 12 nearest of the real Ridgecrest stations) with real PNW noise scaled per station "
        f"to a P SNR (peak |Z| in 2 s after P / noise RMS) drawn log-uniformly in {ms.SIM_SNR_RANGE}: "
        f"{r0.get('station_records', 0)} station records, SNR p10/median/p90 "
        f"{r0.get('snr_p10', math.nan):.2f}/{r0.get('snr_median', math.nan):.2f}/{r0.get('snr_p90', math.nan):.2f}, "
        f"{100 * r0.get('fraction_snr_below_5', math.nan):.0f}% below 5. A P pick is true within "
        f"{ms.SIM_TOLERANCE_S} s of the true P; per model the threshold (grid 0.02-0.98, step 0.01) with the highest "
        f"recall at precision >= {ms.TARGET_PRECISION} (recall 0, threshold nan: no threshold reaches it; "
        "P_max_precision: the best precision of the sweep), and the default 0.3 for reference.",
        "",
        markdown_table(rows, cols),
        "",
    ]


def _real_events_section(
    models, data: DataLayout | Path, cache: Cache, quick: bool, out: Path, log, summary: list[str]
) -> list[str]:
    """The ``real_events`` stage (:mod:`sine_seisbench.bench.real_events`): located events of SINE and of the
    pickers' chains on the Iceland, gmprocess, Ridgecrest and Colombia records, and the out-of-bounds counts."""
    result = real.stage_real_events(models, data, cache, quick, log)
    tables = {k: result[k] for k in ("iceland", "gmprocess", "ridgecrest", "colombia", "bounds")}
    if not any(tables.values()):
        return []
    for name, rows in tables.items():
        if rows:
            pd.DataFrame(rows).to_csv(out / f"real_events_{name}.csv", index=False)
    notes = result["notes"]
    lines = [
        "## Located events on real records",
        "",
        "Every method locates the events of the same records: SINE (`classify` with the station inventory and "
        "the record's velocity model) and the classical chain (greedy association, grid-search location, ML) on "
        "each picker's own picks at its default thresholds (`chain+PhaseNet`, `chain+EQTransformer`), in the "
        "same velocity model.",
        "",
    ]
    iceland = tables["iceland"]
    if iceland:
        lines += [
            "### Iceland: agreement with QuakeMigrate's automatic catalogue",
            "",
            f"{iceland[0]['windows']} windows of 32.5 s (zero-padded by {ms.ICELAND_PAD_S:g} s), "
            f"{notes['iceland']}. Per window, the method's event nearest in origin time to QuakeMigrate's is "
            f"matched within {real.ICELAND_MAX_DT_S:g} s; *events* are summed over the windows (which overlap), "
            "*events_matching_no_qm_event*: more than that from every catalogued event. Distances to "
            "QuakeMigrate's hypocentre. " + real.ICELAND_TEXT,
            "",
            markdown_table(
                iceland,
                [
                    "method",
                    "windows",
                    "events",
                    "matched",
                    "events_matching_no_qm_event",
                    "origin_dt_median_s",
                    "epicentre_median_km",
                    "epicentre_p90_km",
                    "depth_median_abs_diff_km",
                    "ml_pairs",
                    "ml_diff_median",
                    "ml_diff_std",
                    "uncalibrated_magnitudes",
                    "out_of_bounds",
                ],
            ),
            "",
        ]
        summary.append(
            f"Iceland, events matched to QuakeMigrate's automatic catalogue (of {iceland[0]['windows']}):\n\n"
            + markdown_table(
                iceland, ["method", "matched", "epicentre_median_km", "depth_median_abs_diff_km"]
            )
        )
    if tables["gmprocess"]:
        lines += [
            "### gmprocess events: the method's event nearest in time to ComCat's",
            "",
            f"{notes['default']}. "
            + real.GMPROCESS_TEXT
            + " origin_dt_s and depth_diff_km: method - ComCat.",
            "",
            markdown_table(
                tables["gmprocess"],
                [
                    "event",
                    "method",
                    "events",
                    "origin_dt_s",
                    "epicentre_km",
                    "depth_diff_km",
                    "catalogue_magnitude",
                    "magnitude",
                    "uncalibrated",
                    "saturated",
                    "out_of_bounds",
                ],
            ),
            "",
        ]
    ridgecrest = tables["ridgecrest"]
    if ridgecrest:
        lines += [
            "### Ridgecrest: events matched to ComCat against chance",
            "",
            f"{ridgecrest[0]['record']}, {notes['default']}. One-to-one matches within "
            f"{real.RIDGECREST_MAX_DT_S:g} s and {real.RIDGECREST_MAX_KM:g} km; *chance_matched*: the mean over the "
            f"catalogue shifted by -/+{real.CHANCE_SHIFT_S:g} s. " + real.RIDGECREST_TEXT,
            "",
            markdown_table(
                ridgecrest,
                [
                    "method",
                    "catalogue_events",
                    "events",
                    "matched",
                    "chance_matched",
                    "matched_minus_chance",
                    "epicentre_median_km",
                    "depth_median_abs_diff_km",
                ],
            ),
            "",
        ]
        summary.append(
            f"{ridgecrest[0]['record'].capitalize()}, events matched to ComCat and at chance:\n\n"
            + markdown_table(
                ridgecrest, ["method", "catalogue_events", "events", "matched", "chance_matched"]
            )
        )
    if tables["colombia"]:
        lines += [
            "### Colombia (held-out last 2 h): agreement with automatic catalogues",
            "",
            f"{tables['colombia'][0]['span']}, {notes['default']}. One-to-one matches within "
            f"{real.COLOMBIA_MAX_DT_S:g} s and {real.COLOMBIA_MAX_KM:g} km. " + real.COLOMBIA_TEXT,
            "",
            markdown_table(
                tables["colombia"],
                [
                    "reference",
                    "method",
                    "catalogue_events",
                    "events",
                    "matched",
                    "epicentre_median_km",
                ],
            ),
            "",
        ]
    if tables["bounds"]:
        lines += [
            "### Events outside physical bounds",
            "",
            f"Depth above -(highest station elevation + {real.BOUNDS_ABOVE_STATIONS_KM:g} km) or below "
            f"{real.BOUNDS_MAX_DEPTH_KM:g} km, epicentre more than {real.BOUNDS_MAX_EPICENTRE_KM:g} km from the "
            f"station centroid, magnitude outside {list(real.BOUNDS_MAGNITUDE)}, origin more than "
            f"{real.BOUNDS_TIME_S:g} s outside the record, or a non-finite value. Should be 0 for every method.",
            "",
            markdown_table(
                tables["bounds"], ["record", "method", "events", "out_of_bounds", "reasons"]
            ),
            "",
        ]
        totals: dict[str, dict] = {}
        for r in tables["bounds"]:
            t = totals.setdefault(
                r["method"], {"method": r["method"], "events": 0, "out_of_bounds": 0}
            )
            t["events"] += r["events"]
            t["out_of_bounds"] += r["out_of_bounds"]
        summary.append(
            "Located events outside physical bounds, all real records:\n\n"
            + markdown_table(list(totals.values()), ["method", "events", "out_of_bounds"])
        )
    return lines


def summary_block(summary_md: str) -> str:
    """``summary_md`` between the README markers, ready to paste."""
    return f"{SUMMARY_START}\n{summary_md}\n{SUMMARY_END}"


def refresh_readme(readme: Path, summary_md: str) -> None:
    """Replaces the summary between the markers of ``readme`` (or appends it). Only called when a caller
    passes ``readme`` to :func:`run_benchmark` explicitly; ``sine benchmark`` never edits files outside its
    ``--out`` folder."""
    text = readme.read_text()
    block = summary_block(summary_md)
    if SUMMARY_START in text and SUMMARY_END in text:
        head, rest = text.split(SUMMARY_START, 1)
        tail = rest.split(SUMMARY_END, 1)[1]
        readme.write_text(head + block + tail)
    else:
        readme.write_text(text.rstrip() + "\n\n## Benchmark summary\n\n" + block + "\n")


def run_benchmark(
    suite: str = "quick",
    *,
    data_dir: DataLayout | str | Path,
    out: str | Path,
    models: list[str] | None = None,
    datasets: list[str] | None = None,
    stages: list[str] | None = None,
    sine_weights: str | None = DEFAULT_WEIGHTS,
    sim_data: str | Path | None = None,
    readme: str | Path | None = None,
    force: bool = False,
    seed: int = 0,
    tt=None,
) -> Path:
    """Runs the benchmark suite and writes ``OUT/benchmark_SUITE.md`` (plus CSVs and figures) and the
    README-ready summary ``OUT/summary_SUITE.md``; nothing is written outside ``out`` (the SeisBench cache
    aside) unless ``readme`` is given.

    :param data_dir: Where the benchmark data are: a :class:`~sine_seisbench.data.layout.DataLayout`, or the
                     root folder of the documented layout (:data:`~sine_seisbench.data.layout.LAYOUT`). Stages
                     whose part of the data is absent are skipped and listed in the report.
    :param out: The output folder (created if missing).
    :param readme: A README whose summary block (between the benchmark-summary markers) is refreshed; None
                   (default) leaves every file outside ``out`` alone.
    :return: The report's path.
    """
    from ..traveltimes import TravelTimes

    quick = suite == "quick"
    layout, out = as_layout(data_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    messages: list[str] = []

    def log(msg: str) -> None:
        print(msg)
        messages.append(msg)

    if not layout.root.is_dir():
        log(f"data folder {layout.root} not found: real-data stages are skipped")
    seed_cache(layout)
    models_loaded = load_models(models or ["SINE", "PhaseNet", "EQTransformer"], sine_weights)
    cache = Cache(out, force, {name: weights_digest(m) for name, m in models_loaded.items()})
    stages = stages or list(STAGES)
    if tt is None and {"continuous", "location", "simulated_low_snr"} & set(stages):
        tt = TravelTimes()  # a TauP table: built (and cached) only for the stages that need it
    sections = [
        f"# sine benchmark ({suite} suite)",
        "",
        f"- Date: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; seed {seed}; "
        f"models: {', '.join(models_loaded)}; SINE weights: {sine_weights or 'untrained'}",
        "- The labelled sets were probably part of the published pickers' training data: their scores "
        "there are optimistic. SINE was not tuned on any of these sets.",
        "",
    ]
    summary_lines = []
    stage_bar = progress(
        total=len([s for s in STAGES if s in stages]), desc="benchmark", unit="stage"
    )
    started: list[str] = []

    def _stage(name: str) -> bool:
        """True when stage ``name`` runs; moves the stage bar on."""
        if name not in stages:
            return False
        if started:
            stage_bar.update(1)
        started.append(name)
        stage_bar.set_postfix_str(name)
        return True

    with tempfile.TemporaryDirectory() as tmp:
        if _stage("picks"):
            rows = stage_picks(models_loaded, layout, datasets, cache, seed, quick, log)
            if rows:
                pd.DataFrame(rows).to_csv(out / "pick_tasks.csv", index=False)
                cols = [
                    c
                    for c in (
                        "dataset",
                        "model",
                        "task1.auc",
                        "task1.f1",
                        "task2.mcc",
                        "task3.P.mae_s",
                        "task3.P.rmse_s",
                        "task3.P.within_0.1s",
                        "task3.S.mae_s",
                    )
                    if any(c in r for r in rows)
                ]
                sections += ["## Pick-benchmark tasks", "", markdown_table(rows, cols), ""]
                if any("task3.P.within_0.1s" in r for r in rows):
                    summary_lines.append(
                        "Pick-benchmark task 3, P within 0.1 s:\n\n"
                        + markdown_table(rows, ["dataset", "model", "task3.P.within_0.1s"])
                    )
        if _stage("continuous"):
            rows = stage_continuous(models_loaded, layout, cache, quick, log, tt)
            if rows:
                pd.DataFrame(rows).to_csv(out / "continuous.csv", index=False)
                cols = [
                    "record",
                    "model",
                    "tolerance_s",
                    "P_references",
                    "P_recall",
                    "P_residual_mean_s",
                    "P_residual_std_s",
                    "S_recall",
                    "unmatched_picks",
                    "events_seen_by_2",
                ]
                sections += ["## Continuous records", "", markdown_table(rows, cols), ""]
                summary_lines.append(
                    markdown_table(rows, ["record", "model", "P_recall", "P_residual_std_s"])
                )
        if _stage("location"):
            test_sets = {}
            for geometry in ("demo", "central_italy", "iceland"):
                try:
                    test_sets[geometry] = simulated_test_set(
                        Path(sim_data) if sim_data else None,
                        3 if quick else 40,
                        Path(tmp),
                        tt,
                        geometry=geometry,
                        data_dir=layout,
                    )
                except FileNotFoundError as err:
                    log(f"location: {err}; geometry skipped")
            summary, _ = stage_location(models_loaded, test_sets, cache, quick, tt, seed, out, log)
            if summary:
                pd.DataFrame(summary).to_csv(out / "location.csv", index=False)
                cols = [
                    "geometry",
                    "method",
                    "drop_fraction",
                    "noise_factor",
                    "pick_jitter_s",
                    "events",
                    "located",
                    "epicentral_median_km",
                    "epicentral_mean_km",
                    "epicentral_p90_km",
                    "depth_mae_km",
                    "magnitude_mae",
                    "coverage_1sigma",
                    "coverage_2sigma",
                ]
                figures = [f"![dependence, {g}](dependence_{g}.png)" for g in test_sets]
                sections += [
                    "## Location and magnitude on simulated events",
                    "",
                    "Simulated events on the demo network, central Italy and Iceland (the real station "
                    "layouts, real noise where available). Chains: each picker's picks with greedy "
                    "association or PyOcto, then the same grid-search location and ML; `SINE picks → chain` "
                    "feeds SINE's own picks to the chain (PyOcto). Degradations: stations removed "
                    "(drop_fraction), noise added (noise_factor x pre-event RMS), a third of the chains' "
                    "picks removed with Gaussian jitter (pick_jitter_s). coverage_1sigma/2sigma: fraction of "
                    "SINE's located events whose 1-/2-sigma uncertainty ellipse holds the true epicentre "
                    "(0.39/0.86 if calibrated).",
                    "",
                    markdown_table(summary, cols),
                    "",
                    *figures,
                    "",
                ]
                clean = [
                    r
                    for r in summary
                    if r["drop_fraction"] == 0
                    and r["noise_factor"] == 0
                    and r["pick_jitter_s"] == 0
                ]
                summary_lines.append(
                    markdown_table(
                        clean,
                        [
                            "geometry",
                            "method",
                            "located",
                            "epicentral_median_km",
                            "depth_mae_km",
                            "magnitude_mae",
                            "coverage_2sigma",
                        ],
                    )
                )
        if _stage("speed"):
            rows = stage_speed(models_loaded, layout, quick, log)
            if rows:
                sections += ["## Annotate speed", "", markdown_table(rows, list(rows[0])), ""]
                summary_lines.append(
                    markdown_table(rows, ["model", "station_hours_per_s", "ratio_to_PhaseNet"])
                )
        if _stage("iceland"):
            sections += _iceland_section(models_loaded, layout, cache, out, log, summary_lines)
        if _stage("colombia"):
            sections += _colombia_section(models_loaded, layout, cache, quick, out, log)
        if _stage("simulated_low_snr"):
            sections += _low_snr_section(
                models_loaded, layout, cache, quick, tt, seed, tmp, out, log, summary_lines
            )
        if _stage("real_events"):
            sections += _real_events_section(
                models_loaded, layout, cache, quick, out, log, summary_lines
            )
    if started:
        stage_bar.update(1)
    stage_bar.close()
    if messages:
        sections += ["## Skipped", ""] + [f"- {m}" for m in messages]
    report = out / f"benchmark_{suite}.md"
    report.write_text("\n".join(sections) + "\n")
    summary = out / f"summary_{suite}.md"
    if summary_lines:
        summary_md = f"From `sine benchmark --suite {suite}` ({report}):\n\n" + "\n\n".join(
            summary_lines
        )
        summary.write_text(summary_block(summary_md) + "\n")
        if readme and Path(readme).exists():
            refresh_readme(Path(readme), summary_md)
    elif summary.exists():
        summary.unlink()  # a stale summary of an earlier run
    print(f"report written to {report}")
    return report
