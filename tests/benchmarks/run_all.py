"""`make bench`: run every benchmark in its own process, then print the table and draw the chart."""

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks import bench_imports, bench_lanes, bench_push, bench_scheduled, bench_write, harness

BENCHMARKS = {
    "write": bench_write,
    "push": bench_push,
    "scheduled": bench_scheduled,
    "lanes": bench_lanes,
    "imports": bench_imports,
}


def main(selected: list[str]) -> None:
    for name in selected:
        print(f"== {name}", flush=True)  # noqa: T201
        subprocess.run([sys.executable, str(Path(BENCHMARKS[name].__file__))], cwd=harness.BASE_DIR, check=True)
    results = {
        name: json.loads((harness.RESULTS_DIR / f"{name}.json").read_text())
        for name in BENCHMARKS
        if (harness.RESULTS_DIR / f"{name}.json").exists()
    }
    table = "\n\n".join(BENCHMARKS[name].report(result) for name, result in results.items())
    (harness.RESULTS_DIR / "results.md").write_text(table + "\n")
    chart(results, harness.RESULTS_DIR / "bench.png")
    print("\n" + table)  # noqa: T201
    print("\n(docs/bench/results.md, docs/bench/bench.png, docs/bench/*.json)")  # noqa: T201


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [name for name in ("push", "write", "scheduled") if name in results]
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for axis, name in zip(axes[0], panels, strict=True):
        result = results[name]
        if name == "push":
            labels = [f"{row['backlog']:,}" for row in result["pipeline"]]
            positions = range(len(labels))
            series = [
                ("pushes_per_second", f"ordered pushes ({result.get('run_length', 1)} per link)"),
                ("raw_loop_per_second", "raw loop: lock, POST, mark, commit"),
                ("noop_chain_per_second", "no-op Celery chain (1 task per link)"),
            ]
            for offset, (key, label) in zip((-0.27, 0, 0.27), series, strict=True):
                axis.bar([p + offset for p in positions], [r[key] for r in result["pipeline"]], 0.27, label=label)
            tallest = max(r[key] for r in result["pipeline"] for key, _ in series)
            axis.set_ylim(0, tallest * 1.35)  # room for the legend above the bars
            axis.set_xticks(list(positions), labels)
            axis.set(title="Push pipeline, zero-latency API", xlabel="backlog (entries)", ylabel="per second")
        elif name == "write":
            columns = [
                (key, label)
                for key, label in (
                    ("outbox", "outbox, 8 clients"),
                    ("outbox_one_client", "outbox, 1 client"),
                    ("synchronous", "synchronous call,\n8 clients"),
                )
                if key in result
            ]
            for offset, percentile in ((-0.2, "p50"), (0.2, "p99")):
                axis.bar(
                    [k + offset for k in range(len(columns))],
                    [result[key]["latency_ms"][percentile] for key, _ in columns],
                    0.4,
                    label=percentile,
                )
            axis.set_yscale("log")
            axis.set_xticks(range(len(columns)), [label for _, label in columns])
            axis.set(title="Write latency, external API at 5 s", ylabel="ms (log scale)")
        else:
            rows = [
                ("create\nbatched", "create_batched"),
                ("cancel\nbatched", "cancel_batched"),
                ("create\nsingle", "create_single"),
                ("cancel\nsingle", "cancel_single"),
            ]
            reference = result["reference"]
            axis.bar(range(len(rows)), [result[key]["per_second"] for _, key in rows], 0.6, label="School Sync")
            axis.hlines([reference["creates_per_second"]], -0.4, 0.4, colors="red", label="reference service")
            axis.hlines([reference["cancels_per_second"]], 0.6, 1.4, colors="red")
            axis.hlines([reference["creates_per_second"]], 1.6, 2.4, colors="red")
            axis.hlines([reference["cancels_per_second"]], 2.6, 3.4, colors="red")
            axis.set_xticks(range(len(rows)), [label for label, _ in rows])
            axis.set(title="Scheduled changes (100,000)", ylabel="per second")
        axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1:] or list(BENCHMARKS))
