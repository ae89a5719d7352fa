"""Fit scikit-learn's LogisticRegression on the splits that Whisker's
learner benchmark exported, so that both are measured on exactly the same
feature vectors and splits.

Usage: python3 sklearn_compare.py DIR

DIR holds x.f32 (little-endian float32, n x d, row-major), y.i32
(little-endian int32 class indices) and meta.json
({"n", "d", "C", "tol", "max_iter", "probabilities", "splits": [{"train": [...], "test": [...]}]}).
The result goes to DIR/out.json. The model is StandardScaler followed by
multinomial LogisticRegression: the objective Whisker's linear head
minimises (sum of log losses + ||W||^2 / (2C), intercepts unpenalised, on
standardised features).
"""
import json
import os
import sys
import time
import warnings

import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main(d):
    with open(os.path.join(d, "meta.json")) as f:
        meta = json.load(f)
    n, dim = meta["n"], meta["d"]
    X = np.fromfile(os.path.join(d, "x.f32"), dtype="<f4").reshape(n, dim).astype(np.float64)
    y = np.fromfile(os.path.join(d, "y.i32"), dtype="<i4")
    results = []
    converged = True
    for sp in meta["splits"]:
        tr = np.asarray(sp["train"], dtype=np.int64)
        te = np.asarray(sp["test"], dtype=np.int64)
        model = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=meta["C"], multi_class="multinomial", solver="lbfgs",
                               tol=meta["tol"], max_iter=meta["max_iter"]),
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            t0 = time.perf_counter()
            model.fit(X[tr], y[tr])
            fit = time.perf_counter() - t0
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            converged = False
        res = {
            "accuracy": float(np.mean(model.predict(X[te]) == y[te])),
            "fit_seconds": fit,
        }
        if meta.get("probabilities"):
            res["classes"] = [int(c) for c in model.classes_]
            res["proba"] = model.predict_proba(X[te]).tolist()
        results.append(res)
    out = {"sklearn": sklearn.__version__, "numpy": np.__version__, "converged": converged, "results": results}
    with open(os.path.join(d, "out.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main(sys.argv[1])
