"""A complete training script for `coord search --command` (the trial protocol).

    coord search --command "python docs/examples/train.py" --space docs/examples/space.yaml \
        --metric val_loss --pruner asha --min-resource 2 --trials 20

- Parameters come in a JSON file named by COORD_SPEC, never on the command line.
- One metric line per epoch, with its step, lets a pruner (ASHA, Hyperband, median) stop
  a poor trial early: `[coord-metric] {"step": 3, "val_loss": 0.31}`.
- A checkpoint in COORD_CHECKPOINT_DIR (the same directory for every attempt of the trial
  on one host) lets a retried or requeued attempt go on where the last one stopped.
- SIGTERM (coord cancels, a time limit comes, the machine is wanted back): save and exit 75,
  so that the attempt is requeued without spending a retry. Exit 78 for a permanent error.

It trains a linear model by stochastic gradient descent on a fixed synthetic regression
problem (numpy and scikit-learn only), so it runs anywhere coord does in about a second.
"""

import json
import os
import pickle
import signal
import sys

import numpy as np
from sklearn.linear_model import SGDRegressor
from sklearn.metrics import mean_squared_error

with open(os.environ["COORD_SPEC"]) as fh:
    spec = json.load(fh)
params = spec["params"]
epochs = int(params.get("epochs", 10))
if params["alpha"] <= 0:
    print(f"alpha must be positive, got {params['alpha']}", file=sys.stderr)
    sys.exit(78)  # permanent: the same parameters fail the same way, do not retry

rng = np.random.default_rng(0)  # the data is fixed; the trial's own randomness is its seed
X = rng.normal(size=(2000, 20))
y = X @ rng.normal(size=20) + rng.normal(scale=0.5, size=2000)
X_train, X_val, y_train, y_val = X[:1500], X[1500:], y[:1500], y[1500:]

ckpt = os.path.join(os.environ.get("COORD_CHECKPOINT_DIR", "."), "model.pkl")
if os.path.exists(ckpt):  # an earlier attempt of this trial got this far
    with open(ckpt, "rb") as fh:
        model, done = pickle.load(fh)
else:
    model = SGDRegressor(alpha=params["alpha"], eta0=params["eta0"], learning_rate="constant",
                         random_state=int(spec.get("seed", 0)))
    done = 0

stop = False


def on_term(signum, frame):  # finish the epoch, save, exit 75
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)


def save(epoch):
    tmp = ckpt + ".tmp"
    with open(tmp, "wb") as fh:
        pickle.dump((model, epoch), fh)
    os.replace(tmp, ckpt)  # atomic: a kill mid-write leaves the previous checkpoint


for epoch in range(done + 1, epochs + 1):
    model.partial_fit(X_train, y_train)
    loss = mean_squared_error(y_val, model.predict(X_val))
    print("[coord-metric] " + json.dumps({"step": epoch, "val_loss": loss}), flush=True)
    save(epoch)
    if stop:
        sys.exit(75)
