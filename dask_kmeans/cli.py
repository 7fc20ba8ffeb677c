"""The ``dask-kmeans`` command line: parse, connect to a scheduler, call the library, print.

Commands::

    dask-kmeans fit INPUT -k K --model-out MODEL [--labels-out PATH] [options]
    dask-kmeans predict MODEL INPUT --labels-out PATH [options]
    dask-kmeans info MODEL [--json]
    dask-kmeans choose-k INPUT --k-range 2:12 [--scale log1p] [--plots DIR] [options]
    dask-kmeans profile MODEL INPUT [--output PROFILE.csv] [--plots DIR] [options]

INPUT is a Zarr store (``data.zarr``, ``data.zarr::group/array``), a Parquet file, directory or glob, or
a CSV file. Without ``--scheduler`` the work runs on a local cluster sized to the machine; with it, on an
existing Dask scheduler. Progress goes to stderr: a line per iteration, and a dask progress bar
for passes that take more than a second (``dask-kmeans.progress-after`` in the dask config). Exit codes:
0 success, 1 runtime error, 2 usage error. Errors print one line on stderr; ``--debug`` shows the
traceback instead.

``fit`` numbers the segments by size, 0 the largest, in the model, the labels and so in ``profile``; and
its seed defaults to 0, so the same command on the same data gives the same segments. Numbers print one
way across commands: counts with thousands separators, measures (inertia, centres) as ``profile`` prints
its means (thousands separated from 100 up, 3 significant digits below).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator

import dask
import dask.array as da
import fsspec
import numpy as np
from dask.system import CPU_COUNT

from ._version import __version__
from .choose_k import choose_k
from .estimator import KMeans
from .preprocessing import StandardScaler, warn_if_heavy_tailed
from .segments import format_number, format_profile, number_segments_by_size, profile

# Imported where they are used, because `dask-kmeans --help` and usage errors would otherwise wait for
# them (measured: the package alone imports in 0.7 s; with dask_kmeans.io (pandas, pyarrow) 1.3 s, with
# distributed 1.0 s): .io, distributed, and .plots, whose matplotlib is an optional extra.

EXIT_OK, EXIT_RUNTIME_ERROR, EXIT_USAGE = 0, 1, 2
SCHEDULER_TIMEOUT_S = 5

log = logging.getLogger("dask_kmeans")


class CommandError(Exception):
    """A runtime error with a message meant for the user (exit code 1)."""


# ----------------------------------------------------------------------------------------------------
# Argument parsing


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless it says it already or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = not (default is None or default is False or default == argparse.SUPPRESS)
        if action.option_strings and shown and "default" not in text:
            text += f" (default: {default})".replace("%", "%%")
        return text


DEFAULT_SEED = 0


def _seed(text: str) -> int | None:
    if text == "fresh":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'fresh'; got {text!r}") from None


def _add_seed_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--seed", type=_seed, default=DEFAULT_SEED, metavar="S",
        help=f"random seed of {what}: the same seed, data and options give the same result; 'fresh' "
             f"draws a new one each run (default: {DEFAULT_SEED})",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _n_init(text: str) -> str | int:
    return text if text == "auto" else _positive_int(text)


def _column_list(text: str) -> list[str]:
    columns = [c.strip() for c in text.split(",") if c.strip()]
    if not columns:
        raise argparse.ArgumentTypeError("expected comma-separated column names")
    return columns


def _k_range(text: str) -> range:
    try:
        low, high = (int(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX, for example 2:12; got {text!r}") from None
    if not 2 <= low <= high:
        raise argparse.ArgumentTypeError(f"need 2 <= MIN <= MAX; got {text!r}")
    return range(low, high + 1)


def _add_scale_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scale", choices=["none", "standard", "log1p"], default="none",
        help="scale features first, in one pass: 'standard' (zero mean, unit variance) or 'log1p' (log1p, "
             "then standard: for heavy-tailed amounts such as spending); stored in the model",
    )


def _scaler(scale: str):
    return None if scale == "none" else StandardScaler(log1p=scale == "log1p")


def _add_input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id-column", metavar="COL", help="column carried to the labels, not clustered")
    parser.add_argument("--array", metavar="NAME", help="the array inside a Zarr group")


def _add_model_input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--id-column", metavar="COL",
        help="column carried to the outputs, not clustered (default: the model's, from fit --id-column)",
    )
    parser.add_argument("--array", metavar="NAME", help="the array inside a Zarr group")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="address of a running Dask scheduler (tcp://host:port); default: a local cluster",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def _add_iteration_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-iter", type=_positive_int, default=300, metavar="N",
                        help="most Lloyd iterations (passes over the data)")
    parser.add_argument("--tol", type=_non_negative_float, default=1e-4, metavar="T",
                        help="stop when the centres move less than this, relative to the data's variance")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dask-kmeans",
        description="K-means clustering of data larger than memory, on Dask.",
        epilog="Exit codes: 0 success, 1 runtime error, 2 usage error.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_command(name: str, **kwargs) -> argparse.ArgumentParser:
        return commands.add_parser(name, formatter_class=_HelpFormatter, **kwargs)

    fit = add_command("fit", help="cluster a dataset and save the model", description=(
        "Cluster INPUT into K clusters, save the model, and optionally write every row's label. "
        "Segments are numbered by size: 0 is the largest cluster, in the model, the labels and the "
        "profiles (the CLI renumbers the fitted centres; the KMeans estimator itself keeps "
        "scikit-learn's arbitrary order). With the default seed, the same command gives the same segments."
    ))
    fit.add_argument("input", metavar="INPUT", help="Zarr store, Parquet file/directory/glob, or CSV")
    fit.add_argument("-k", "--n-clusters", type=_positive_int, required=True, metavar="K",
                     help="number of clusters (segments)")
    fit.add_argument("--model-out", required=True, metavar="MODEL", help="where to save the model (JSON)")
    fit.add_argument("--labels-out", metavar="PATH", help="write labels to this .zarr or .parquet path")
    fit.add_argument("--distances", action="store_true", help="also write each row's distance to its centre")
    fit.add_argument("--columns", type=_column_list, metavar="A,B,C",
                     help="feature columns of a table (default: every numeric column but --id-column)")
    _add_input_options(fit)
    _add_scale_option(fit)
    fit.add_argument("--init", default="k-means||", choices=["k-means||", "k-means++", "random"],
                     help="how the first centres are chosen: 'k-means||' reads the data in a few passes")
    fit.add_argument(
        "--metric", default="euclidean", choices=["euclidean", "cosine"],
        help="'cosine': spherical k-means for embeddings (rows scaled to unit length as read; distances "
             "written are 1 - cosine) (default: euclidean)",
    )
    fit.add_argument(
        "--algorithm", default="auto", choices=["auto", "lloyd", "hamerly", "yinyang"],
        help="how iterations find nearest centres; all give the same labels (centres to rounding). "
             "'auto': triangle-inequality bounds (hamerly) where they fit in memory, back to lloyd where "
             "they do not pay (default: auto)",
    )
    fit.add_argument("--n-init", type=_n_init, default="auto", metavar="N",
                     help="initialisations, the best kept ('auto' or a number)")
    _add_iteration_options(fit)
    _add_seed_option(fit, "the initialisation, saved in the model")
    fit.add_argument(
        "--persist", choices=["auto", "yes", "no"], default="auto",
        help="keep the data in the cluster's memory (auto: when it takes at most half of it)",
    )
    fit.add_argument(
        "--checkpoint", metavar="PATH",
        help="save the fit's state here after every iteration; if it exists, resume from it",
    )
    fit.add_argument("--resume", action="store_true", help="resume from --checkpoint, which must exist")
    fit.add_argument(
        "--nan-policy", choices=["raise", "omit"], default="raise",
        help="rows with NaN or infinity: stop with an error, or leave them out (label -1)",
    )
    _add_run_options(fit)

    predict = add_command("predict", help="label a dataset with a saved model", description=(
        "Label every row of INPUT with the nearest centre of MODEL and write the labels."
    ))
    predict.add_argument("model", metavar="MODEL", help="a model file written by 'fit'")
    predict.add_argument("input", metavar="INPUT", help="Zarr store, Parquet file/directory/glob, or CSV")
    predict.add_argument("--labels-out", required=True, metavar="PATH", help=".zarr or .parquet path")
    predict.add_argument("--distances", action="store_true", help="also write each row's distance")
    _add_model_input_options(predict)
    _add_run_options(predict)

    choose = add_command("choose-k", help="compare values of k and suggest one", description=(
        "Run K-means for every k in --k-range in shared passes over INPUT; print each k's inertia (elbow) "
        "and silhouette score (on a uniform sample) and suggest a k."
    ))
    choose.add_argument("input", metavar="INPUT", help="Zarr store, Parquet file/directory/glob, or CSV")
    choose.add_argument("--k-range", type=_k_range, default=range(2, 13), metavar="MIN:MAX",
                        help="values of k to try (default 2:12)")
    choose.add_argument("--columns", type=_column_list, metavar="A,B,C", help="feature columns (tables)")
    _add_input_options(choose)
    _add_scale_option(choose)
    choose.add_argument("--sample-size", type=_positive_int, default=10_000, metavar="N",
                        help="rows in the silhouette sample (default 10000)")
    _add_iteration_options(choose)
    _add_seed_option(choose, "the sample and the starts")
    choose.add_argument("--nan-policy", choices=["raise", "omit"], default="raise",
                        help="rows with NaN or infinity: stop with an error, or leave them out")
    choose.add_argument("--plots", metavar="DIR", help="save elbow.png and silhouette.png here")
    choose.add_argument("--json", action="store_true", help="machine-readable output")
    _add_run_options(choose)

    prof = add_command("profile", help="describe the segments of a saved model", description=(
        "Label INPUT with MODEL and print, for each segment, its size, share and mean of each feature in "
        "the data's units, and a short description from its typical spend (the mean of log1p) against "
        "the typical customer's. One pass over INPUT."
    ))
    prof.add_argument("model", metavar="MODEL", help="a model file written by 'fit'")
    prof.add_argument("input", metavar="INPUT", help="Zarr store, Parquet file/directory/glob, or CSV")
    _add_model_input_options(prof)
    prof.add_argument("--output", metavar="PATH", help="also write the full profile (with medians) as CSV")
    prof.add_argument("--plots", metavar="DIR", help="save profile_heatmap.png and segment_sizes.png here")
    prof.add_argument("--median-sample", type=int, default=100_000, metavar="N",
                      help="rows sampled for the medians (default 100000; 0: no medians)")
    prof.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the median sample")
    prof.add_argument("--json", action="store_true", help="machine-readable output")
    _add_run_options(prof)

    info = add_command("info", help="describe a saved model", description=(
        "Describe a saved model: its fit, parameters and centres (in the data's units too when the model "
        "scales its input)."
    ))
    info.add_argument("model", metavar="MODEL", help="a model file written by 'fit'")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


# ----------------------------------------------------------------------------------------------------
# Running


@contextlib.contextmanager
def dask_client(address: str | None, quiet: bool) -> Iterator[object]:
    """A client of the scheduler at ``address``, or of a local cluster sized to the machine."""
    from distributed import Client, LocalCluster

    if address is None:
        # One single-threaded worker process per core: BLAS stays at one thread per worker.
        with LocalCluster(
            n_workers=CPU_COUNT, threads_per_worker=1, processes=True, dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster, Client(cluster) as client:
            _progress(quiet, f"local cluster: {CPU_COUNT} workers")
            yield client
        return
    try:
        client = Client(address, timeout=SCHEDULER_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise CommandError(
            f"cannot reach the Dask scheduler at {address} within {SCHEDULER_TIMEOUT_S} s ({exc}). "
            "Check the address and that the scheduler runs, or leave out --scheduler to use a local cluster."
        ) from None
    with client:
        workers = len(client.scheduler_info().get("workers", {}))
        _progress(quiet, f"scheduler {address}: {workers} workers")
        yield client


def _progress(quiet: bool, message: str) -> None:
    if not quiet:
        print(f"dask-kmeans: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _step(quiet: bool, what: str) -> Iterator[None]:
    started = time.perf_counter()
    _progress(quiet, f"{what} ...")
    yield
    _progress(quiet, f"{what}: done in {time.perf_counter() - started:.1f}s")


class _RunsAsK(logging.Filter):
    """choose-k's iteration lines name each k ("k=5: Iteration 3: ..."), not its run ("Run 3: ...")."""

    def __init__(self, ks: list[int]) -> None:
        super().__init__()
        self.ks = ks

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args and isinstance(args[0], str) and args[0].startswith("Run "):
            with contextlib.suppress(ValueError, IndexError):
                record.args = (f"k={self.ks[int(args[0][4:].split(':')[0])]}: ", *args[1:])
        return True


@contextlib.contextmanager
def _iteration_log(quiet: bool, log_filter: logging.Filter | None = None) -> Iterator[None]:
    """Show the estimator's per-iteration log lines on stderr."""
    if quiet:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("dask-kmeans: %(message)s"))
    if log_filter is not None:
        handler.addFilter(log_filter)
    previous = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(previous)


def _check_outputs_free(paths: list[str | None], overwrite: bool) -> None:
    """Refuse before any work when an output exists and --overwrite was not given."""
    for path in filter(None, paths):
        fs, _, (target,) = fsspec.get_fs_token_paths(path)
        if fs.exists(target) and not overwrite:
            raise CommandError(f"{path} already exists; pass --overwrite to replace it.")


def _remove(path: str) -> None:
    fs, _, (target,) = fsspec.get_fs_token_paths(path)
    if fs.exists(target):
        fs.rm(target, recursive=True)


def _write_labels(model, table, path: str, *, distances: bool, overwrite: bool, labels=None) -> None:
    from .io import write_labels

    X = table.X
    distances_out = None
    if distances:
        # Labels and distances from one pass, in the space the model clusters (after its preprocessing).
        labels_out, distances_out = model.predict_with_distance(X)
    elif labels is not None:
        labels_out = da.from_array(labels, chunks=(X.chunks[0],))  # from the fit's last pass: no new pass
    else:
        labels_out = model.predict(X)
    write_labels(
        path, labels_out, distances=distances_out, ids=table.ids, id_name=table.id_name or "id",
        overwrite=overwrite,
    )


HEAVY_TAIL_SAMPLE_ROWS = 20_000


def _warn_if_heavy_tailed(table) -> None:
    """Warn (one line) when unscaled data look like heavy-tailed amounts that need ``--scale log1p``.

    Checked on the first rows (at most HEAVY_TAIL_SAMPLE_ROWS, read here from the first chunk or few,
    before a cluster starts): a fraction of one pass, where a uniform sample would read every chunk.
    """
    X = table.X
    head = X[: min(X.shape[0], HEAVY_TAIL_SAMPLE_ROWS)].compute()
    warn_if_heavy_tailed(head, table.feature_names)


def _read_for_clustering(args: argparse.Namespace):
    """INPUT read with --columns and --id-column; an integer column named like an id among the features
    (``customer_id``: :func:`dask_kmeans.io.read` warns of it) is an error naming ``--id-column``."""
    from .io import IdLikeColumnWarning, read

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = read(args.input, columns=args.columns, id_column=args.id_column, array=args.array)
    for warning in caught:
        if isinstance(warning.message, IdLikeColumnWarning):
            id_like = list(warning.message.columns)
            column = id_like[0] if id_like else "COLUMN"
            raise CommandError(
                f"column(s) {', '.join(id_like) or '?'} of {table.source} look like identifiers, and "
                f"clustering an id as a feature ruins the clusters: pass --id-column {column} to carry it "
                "to the labels instead, or --columns to choose the features."
            )
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return table


def run_fit(args: argparse.Namespace) -> int:
    from .io import save_model

    _check_outputs_free([args.model_out, args.labels_out], args.overwrite)
    if args.resume:
        if not args.checkpoint:
            raise CommandError("--resume needs --checkpoint PATH: the checkpoint to resume from.")
        if not fsspec.core.url_to_fs(args.checkpoint)[0].exists(args.checkpoint):
            raise CommandError(f"--resume: no checkpoint at {args.checkpoint}; leave out --resume to start.")
    model = KMeans(
        args.n_clusters, init=args.init, n_init=args.n_init, max_iter=args.max_iter, tol=args.tol,
        random_state=args.seed, nan_policy=args.nan_policy, preprocessing=_scaler(args.scale),
        metric=args.metric, algorithm=args.algorithm,
    )
    # Reading builds the graph and checks paths and columns from metadata: fail before starting a cluster.
    table = _read_for_clustering(args)
    n, d = table.X.shape
    _progress(args.quiet, f"{table.source}: {n:,} rows x {d} features in {table.X.numblocks[0]} chunks")
    if args.scale == "none" and args.metric == "euclidean":  # cosine only sees directions
        _warn_if_heavy_tailed(table)
    with dask_client(args.scheduler, args.quiet):
        with _step(args.quiet, "fit"), _iteration_log(args.quiet):
            persist = {"auto": "auto", "yes": True, "no": False}[args.persist]
            model.fit(table, persist=persist, checkpoint=args.checkpoint)
        number_segments_by_size(model)  # segment ids stable from run to run, 0 the largest
        if table.id_name is not None:
            model.id_column_ = table.id_name  # saved: predict and profile carry it without --id-column
        # Labels first, the model last: a run that fails leaves no model without its labels (and the
        # label writer itself leaves nothing behind when it fails).
        if args.labels_out:
            with _step(args.quiet, f"writing labels to {args.labels_out}"):
                _write_labels(model, table, args.labels_out, distances=args.distances,
                              overwrite=args.overwrite, labels=getattr(model, "labels_", None))
        try:
            save_model(model, args.model_out, overwrite=args.overwrite)
        except BaseException:
            if args.labels_out:
                _remove(args.labels_out)
            raise
    print(
        f"fitted {args.n_clusters} clusters on {n:,} rows x {d} features: "
        f"inertia {format_number(model.inertia_)}, "
        f"{model.n_iter_:,} iterations ({'converged' if model.converged_ else 'max_iter reached'}), "
        f"seed {'fresh' if args.seed is None else args.seed}"
        + (f", {model.n_omitted_:,} rows with NaN or infinity left out" if model.n_omitted_ else "")
    )
    sizes = np.bincount(model.labels_[model.labels_ >= 0], minlength=args.n_clusters)
    print("segments by size: " + ", ".join(f"{j}: {size:,}" for j, size in enumerate(sizes)))
    print(f"model: {args.model_out}")
    if args.labels_out:
        print(f"labels: {args.labels_out}")
    return EXIT_OK


def _model_and_its_input(args: argparse.Namespace, *, writes_ids: bool = False):
    """The saved model, and INPUT read with the model's feature columns (checked against it) and id column.

    The id column is --id-column, or else the model's (``fit --id-column``); an input without the model's
    id column is read without ids (with a warning where the output would have carried them).
    """
    from .io import load_model, read, source_columns

    model = load_model(args.model)
    names = getattr(model, "feature_names_in_", None)
    columns = None if names is None else source_columns(names)
    id_column = args.id_column or getattr(model, "id_column_", None)
    try:
        table = read(args.input, columns=columns, id_column=id_column, array=args.array)
    except ValueError as error:
        about_the_id = "id column" in str(error) or "id_column" in str(error)
        if args.id_column or id_column is None or not about_the_id:
            raise
        if writes_ids:
            warnings.warn(
                f"the model's id column {id_column!r} is not in {args.input}: the labels have no ids. "
                "Pass --id-column to name the input's.", UserWarning, stacklevel=1,
            )
        table = read(args.input, columns=columns, array=args.array)
    if table.X.shape[1] != model.n_features_in_:
        raise CommandError(
            f"{table.source} has {table.X.shape[1]} feature columns; "
            f"the model expects {model.n_features_in_}."
        )
    return model, table


def run_predict(args: argparse.Namespace) -> int:

    _check_outputs_free([args.labels_out], args.overwrite)
    model, table = _model_and_its_input(args, writes_ids=True)
    with dask_client(args.scheduler, args.quiet):
        with _step(args.quiet, f"writing labels to {args.labels_out}"):
            _write_labels(model, table, args.labels_out, distances=args.distances, overwrite=args.overwrite)
    print(f"labelled {table.X.shape[0]:,} rows with {len(model.cluster_centers_)} clusters"
          + (f", with their ids ({table.id_name})" if table.id_name else ""))
    print(f"labels: {args.labels_out}")
    return EXIT_OK


def run_info(args: argparse.Namespace) -> int:
    from .io import load_model

    model = load_model(args.model)
    names = getattr(model, "feature_names_in_", None)
    names = [str(n) for n in names] if names is not None else [f"x{j}" for j in range(model.n_features_in_)]
    summary = {
        "n_clusters": int(len(model.cluster_centers_)),
        "n_features": int(model.n_features_in_),
        "feature_names": names,
        "dtype": str(model.cluster_centers_.dtype),
        "inertia": float(model.inertia_),
        "n_iter": int(model.n_iter_),
        "converged": bool(model.converged_),
        "params": {
            k: (repr(v) if k == "preprocessing" and v is not None else v)
            for k, v in model.get_params(deep=False).items() if k != "init" or isinstance(v, str)
        },
        "id_column": getattr(model, "id_column_", None),
        "cluster_centers": model.cluster_centers_.tolist(),
        # With preprocessing the centres are in its scaled space; these are the same in the data's units.
        "centers_scaled": hasattr(model, "preprocessing_"),
        "cluster_centers_data_units": (
            np.asarray(model.preprocessing_.inverse_transform(model.cluster_centers_)).tolist()
            if hasattr(model, "preprocessing_") else None
        ),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    print(f"model: {args.model}")
    print(f"{summary['n_clusters']} clusters, {summary['n_features']} features ({summary['dtype']})")
    print(f"inertia {format_number(summary['inertia'])} after {summary['n_iter']:,} iterations"
          f" ({'converged' if summary['converged'] else 'max_iter reached'})")
    print("params: " + ", ".join(f"{k}={v!r}" for k, v in summary["params"].items()))
    if summary["id_column"]:
        print(f"id column: {summary['id_column']} (predict and profile carry it to their outputs)")
    width = max(10, *(len(n) for n in names))

    def centres(title: str, rows) -> None:
        print(title)
        print(f"{'segment':>7} " + " ".join(f"{n[:width]:>{width}}" for n in names))
        for j, center in enumerate(rows):
            print(f"{j:>7} " + " ".join(f"{format_number(v):>{width}}" for v in center))

    if summary["centers_scaled"]:
        centres(f"centres in scaled units ({model.preprocessing_!r}: the space the model clusters in):",
                model.cluster_centers_)
        centres("centres in the data's units:", summary["cluster_centers_data_units"])
    else:
        centres("centres:", model.cluster_centers_)
    return EXIT_OK


def _plot_paths(directory: str | None, names: list[str]) -> list[str]:
    if not directory:
        return []
    try:
        import dask_kmeans.plots  # noqa: F401 - fails early without matplotlib
    except ImportError as error:
        raise CommandError(str(error)) from None
    return [os.path.join(directory, name) for name in names]


def run_choose_k(args: argparse.Namespace) -> int:
    plots = _plot_paths(args.plots, ["elbow.png", "silhouette.png"])
    _check_outputs_free(plots, args.overwrite)
    table = _read_for_clustering(args)
    n, d = table.X.shape
    _progress(args.quiet, f"{table.source}: {n:,} rows x {d} features in {table.X.numblocks[0]} chunks")
    ks = list(args.k_range)
    _progress(args.quiet, (
        f"k={ks[0]}..{ks[-1]} in shared passes: one for the sample, one per iteration (a line per k "
        "still moving), one for the inertias" + (", one more to scale first" if args.scale != "none" else "")
    ))
    with dask_client(args.scheduler, args.quiet), _step(args.quiet, "choose-k"), \
            _iteration_log(args.quiet, _RunsAsK(ks)):
        selection = choose_k(
            table, args.k_range, sample_size=args.sample_size, preprocessing=_scaler(args.scale),
            max_iter=args.max_iter, tol=args.tol, random_state=args.seed, nan_policy=args.nan_policy,
        )
    if plots:
        from .plots import save_plots

        save_plots(args.plots, selection=selection)
    if args.json:
        print(json.dumps({
            "suggested_k": selection.suggested_k,
            "reason": selection.reason,
            "elbow_k": selection.elbow_k,
            "n_passes": selection.n_passes,
            "sample_size": selection.sample_size,
            "table": selection.table.reset_index().to_dict(orient="records"),
            "plots": plots,
        }, indent=2, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
        return EXIT_OK
    print(selection.table.to_string(formatters={"inertia": format_number, "silhouette": format_number}))
    # The reason names k itself ("k=5: the inertia curve bends ..." or "k=5 has the highest ...").
    prefix = f"k={selection.suggested_k}: "
    reason = selection.reason
    print(f"suggested {prefix}{reason.removeprefix(prefix)}" if reason.startswith(prefix)
          else f"suggested: {reason}")
    print(f"{selection.n_passes:,} passes over the data for {len(selection.table)} values of k, seed "
          f"{'fresh' if args.seed is None else args.seed}")
    for path in plots:
        print(f"plot: {path}")
    return EXIT_OK


def run_profile(args: argparse.Namespace) -> int:
    plots = _plot_paths(args.plots, ["profile_heatmap.png", "segment_sizes.png"])
    _check_outputs_free([args.output, *plots], args.overwrite)
    if args.median_sample < 0:
        raise CommandError(f"--median-sample must be 0 or more; got {args.median_sample}.")
    model, table = _model_and_its_input(args)
    with dask_client(args.scheduler, args.quiet), _step(args.quiet, "profile"):
        segments = profile(model, table, median_sample_size=args.median_sample, random_state=args.seed)
    if args.output:
        from .io import atomic_output

        with atomic_output(args.output, overwrite=args.overwrite) as target:
            segments.to_csv(target)
    if plots:
        from .plots import save_plots

        # "customers" on the sizes chart when an id column names the rows (the model's, or --id-column)
        save_plots(args.plots, profile=segments, id_column=table.id_name)
    if args.json:
        print(segments.reset_index().to_json(orient="records", indent=2))
        return EXIT_OK
    print(format_profile(segments))
    if segments.attrs["n_omitted"]:
        print(f"{segments.attrs['n_omitted']:,} rows with NaN or infinity are in no segment")
    for path in filter(None, [args.output, *plots]):
        print(f"written: {path}")
    return EXIT_OK


COMMANDS = {
    "fit": run_fit, "predict": run_predict, "info": run_info, "choose-k": run_choose_k,
    "profile": run_profile,
}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"dask-kmeans: warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def _client_logs_quiet(debug: bool):
    """Without --debug, keep distributed's client side from logging tracebacks (a lost scheduler logs
    several: the client, and its batched stream when the scheduler goes while it sends): the command's
    own error says what happened, on one line."""
    loggers = [logging.getLogger(name) for name in _CLIENT_SIDE_LOGGERS]

    def critical_only(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.CRITICAL

    # A filter, not a level: distributed sets its loggers' levels when it is imported (later, lazily).
    # Filters are the logger's own (not inherited), so each module's logger gets one.
    if not debug:
        for logger in loggers:
            logger.addFilter(critical_only)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(critical_only)


_CLIENT_SIDE_LOGGERS = ("distributed.client", "distributed.batched", "distributed.core",
                        "distributed.comm.tcp")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # exits with 2 on usage errors
    try:
        # A dask progress bar on stderr for passes that take more than a second; warnings as one line.
        with dask.config.set({"dask-kmeans.progress": not getattr(args, "quiet", True)}), \
                warnings.catch_warnings(), _client_logs_quiet(args.debug):
            warnings.showwarning = _show_warning
            code = COMMANDS[args.command](args)
            sys.stdout.flush()  # here, so that a closed pipe shows now and not at exit
            return code
    except BrokenPipeError:
        # The reader of stdout left (`| head`): end quietly, as the Python docs advise for SIGPIPE; stdout
        # goes to devnull so that the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print("dask-kmeans: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line, unless --debug
        if args.debug:
            raise
        message = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and exc.strerror:  # "No such file: PATH", not "[Errno 2] ..."
            message = exc.strerror + (f": {exc.filename}" if exc.filename else "")
        print(f"dask-kmeans: error: {message}", file=sys.stderr)
        return EXIT_RUNTIME_ERROR


if __name__ == "__main__":
    sys.exit(main())
