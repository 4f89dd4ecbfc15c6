"""Glasses-search benchmark: ``./dev python -m eval.bench_glasses [--queries 40] [--n 1000000]``.

1. End to end: the median (and 90th percentile) wall time of one query photo through `GlassesSearch`:
   detection on the exposure-normalised photo, 5 points, band, eye correction, embedding, exact top-10
   cosine search over the 3,200 registered products. The photos are evaluation-style queries (test products
   drawn on LFW faces, augmented; seeded); one warm-up call is not timed.
2. A million-item approximate index: the database is `--n` unit vectors drawn from a Gaussian fitted to
   the 3,200 registered product embeddings (their mean and covariance; "synthetic but realistic": the
   same anisotropic distribution as real product embeddings, no duplicates), plus the real products;
   the queries are embeddings of evaluation-style query photos when `--query-photos` > 0, otherwise held-out
   Gaussian draws. Printed: build time, per-query latency (one query at a time, median of all), and
   recall@10 against the exact (IndexFlatIP) neighbours. `--random` uses uniformly random unit vectors
   instead (no structure: the hardest case for graph and cell indexes).
Timings depend on the machine and its load: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from models.glasses.index import HNSW_EF_SEARCH


def query_photos(count: int, seed: int = 1000) -> list[np.ndarray]:
    """Evaluation-style query photos (see eval.glasses), from LFW faces outside the labelled set."""
    from eval.glasses import GlassesOptions, _Photos, plan

    items = [it for it in plan(GlassesOptions(out=None, queries=count, non_faces=0, no_glasses=0, seed=seed))
             if it["kind"] == "query"]
    photos = _Photos()
    return [photos(it)[0] for it in items]


def bench_end_to_end(search, photos: list[np.ndarray]) -> dict:
    from models.glasses.search import GlassesRefusal

    try:
        search(photos[0])  # warm-up: lazy network and detector set-up
    except GlassesRefusal:
        pass
    times, refused = [], 0
    for photo in photos:
        t0 = time.perf_counter()
        try:
            search(photo, 10)
        except GlassesRefusal:
            refused += 1
        times.append(time.perf_counter() - t0)
    ms = 1000 * np.asarray(times)
    return {"queries": len(times), "median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "refused": refused}


def synthetic_database(embeddings: np.ndarray, n: int, rng: np.random.Generator, random: bool = False) -> np.ndarray:
    d = embeddings.shape[1]
    if random:
        x = rng.standard_normal((n, d), dtype=np.float32)
    else:
        mean = embeddings.mean(0)
        cov = np.cov(embeddings, rowvar=False) + 1e-6 * np.eye(d)
        chol = np.linalg.cholesky(cov).astype(np.float32)
        x = np.empty((n, d), np.float32)
        for s in range(0, n, 100_000):  # in blocks: bounded memory
            m = min(100_000, n - s)
            x[s:s + m] = mean + rng.standard_normal((m, d), dtype=np.float32) @ chol.T
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def bench_index(db: np.ndarray, queries: np.ndarray, kind: str, **params) -> dict:
    from models.glasses.index import build_index, recall_at_k, search

    t0 = time.perf_counter()
    exact = build_index(db, "exact")
    _, truth = search(exact, queries, 10)
    exact_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = build_index(db, kind, **params)
    build_s = time.perf_counter() - t0
    ids, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, i = search(index, q[None], 10)
        times.append(time.perf_counter() - t0)
        ids.append(i[0])
    return {"kind": kind, "params": params, "n": len(db), "build_s": round(build_s, 1),
            "query_ms_median": float(1000 * np.median(times)), "query_ms_p90": float(1000 * np.percentile(times, 90)),
            "recall_at_10": recall_at_k(np.stack(ids), truth, 10), "exact_search_all_queries_s": round(exact_s, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=40, help="query photos timed end to end (median over them)")
    ap.add_argument("--threads", type=int, default=None, help="torch and faiss threads (default: all cores)")
    ap.add_argument("--n", type=int, default=1_000_000, help="items in the approximate index (0: skip)")
    ap.add_argument("--index-queries", type=int, default=500, help="queries for the index benchmark")
    ap.add_argument("--query-photos", type=int, default=200,
                    help="of those, embeddings of real query photos (the rest: Gaussian draws)")
    ap.add_argument("--kind", default="hnsw", choices=("hnsw", "ivf"))
    ap.add_argument("--m", type=int, default=32, help="HNSW links per node")
    ap.add_argument("--ef-construction", type=int, default=80)
    ap.add_argument("--ef-search", type=int, default=HNSW_EF_SEARCH)
    ap.add_argument("--nlist", type=int, default=4096, help="IVF cells")
    ap.add_argument("--nprobe", type=int, default=32)
    ap.add_argument("--random", action="store_true", help="uniformly random unit vectors instead")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import cv2
    import faiss
    import torch

    from models.glasses.search import GlassesSearch

    if args.threads:
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    cv2.setNumThreads(1)
    search = GlassesSearch.from_pretrained()
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores); torch threads {torch.get_num_threads()}")
    photos = query_photos(max(args.queries, args.query_photos))
    if args.queries:
        r = bench_end_to_end(search, photos[:args.queries])
        print(f"end to end (detect, band, correction, embed, top-10 search over {len(search.products)} products): "
              f"median {r['median_ms']:.1f} ms, p90 {r['p90_ms']:.1f} ms over {r['queries']} queries "
              f"({r['refused']} refused); load average {os.getloadavg()[0]:.2f}")
    if args.n:
        rng = np.random.default_rng(args.seed)
        real = []
        for photo in photos[:args.query_photos]:
            try:
                real.append(search.embed(photo)[0].embedding)
            except ValueError:
                continue
        extra = args.index_queries - len(real)
        fake = synthetic_database(search.embeddings, extra, rng, args.random) if extra > 0 else np.zeros((0, 128))
        queries = np.concatenate([np.asarray(real, np.float32).reshape(-1, search.embeddings.shape[1]),
                                  fake.astype(np.float32)])
        t0 = time.perf_counter()
        db = synthetic_database(search.embeddings, args.n - len(search.embeddings), rng, args.random)
        db = np.concatenate([search.embeddings, db])
        what = "uniform random unit vectors" if args.random else "Gaussian fitted to the registered embeddings"
        print(f"database: {len(db):,} x {db.shape[1]} ({what}) made in {time.perf_counter() - t0:.1f} s; "
              f"{len(real)} query-photo embeddings + {max(extra, 0)} synthetic queries")
        params = ({"m": args.m, "ef_construction": args.ef_construction, "ef_search": args.ef_search}
                  if args.kind == "hnsw" else {"nlist": args.nlist, "nprobe": args.nprobe})
        r = bench_index(db, queries, args.kind, **params)
        print(f"{r['kind']} {r['params']}: build {r['build_s']} s, query median {r['query_ms_median']:.3f} ms "
              f"(p90 {r['query_ms_p90']:.3f}), recall@10 vs exact {r['recall_at_10']:.4f} "
              f"(exact search of all queries {r['exact_search_all_queries_s']} s); load average "
              f"{os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
