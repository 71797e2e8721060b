"""A small PyTorch MLP with standardised inputs. Runs on CUDA on a GPU slot (the
coordinator sets device=cuda and CUDA_VISIBLE_DEVICES), on the CPU elsewhere.

With ``procs: N`` it trains as N processes under torchrun (``ddp.py``): every rank draws
the same shuffled batches (the same seed), takes every N-th row of each, and
DistributedDataParallel averages the gradients. Each rank's loss is its shard's sum scaled
by N over the whole batch's size, so the average is the full batch's mean loss even when
the batch does not split evenly: the same training as one process, up to the order of
floating-point sums (docs/usage.md gives the measured difference). Dropout draws its masks
per rank, so with dropout > 0 the runs are alike in distribution only."""

from typing import Any

import ddp
import numpy as np
import torch
import trialkit
from torch import nn

NEEDS_IMPUTE = True


def fit_steps(params: dict[str, Any], X: Any, y: Any, X_valid: Any, ctx: trialkit.Context,
              resume: Any = None) -> Any:
    """Train epoch by epoch; yield (epochs so far, validation predictions, state) per epoch.
    ``resume`` (a state: weights, optimiser, both random generators) continues from there."""
    hidden, layers = int(params.get("hidden_size", 64)), int(params.get("n_layers", 2))
    lr, wd = float(params.get("lr", 1e-3)), float(params.get("weight_decay", 0.0))
    dropout, epochs = float(params.get("dropout", 0.0)), int(params.get("epochs", 20))
    batch = int(params.get("batch_size", 256))
    if hidden < 1 or layers < 1 or epochs < 1 or batch < 1 or lr <= 0 or not 0 <= dropout < 1:
        raise trialkit.ParamError("hidden_size, n_layers, epochs, batch_size >= 1; lr > 0; 0 <= dropout < 1")
    torch.manual_seed(ctx.seed)
    torch.set_num_threads(ctx.threads)
    device = torch.device(ddp.device(ctx.device))
    xt = np.asarray(X, dtype=np.float32)
    mean, std = xt.mean(axis=0), xt.std(axis=0) + 1e-6
    xt = torch.from_numpy((xt - mean) / std).to(device)
    xv = torch.from_numpy((np.asarray(X_valid, dtype=np.float32) - mean) / std).to(device)
    yt = torch.from_numpy(np.asarray(y, dtype=np.float32)).to(device)
    width, mods = xt.shape[1], []
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    net = nn.Sequential(*mods, nn.Linear(width, 1)).to(device)
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum") if ctx.task == "classification" else nn.MSELoss(reduction="sum")
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=wd)
    train_net, world = ddp.wrap(net, str(device)), ddp.world()
    gen = torch.Generator().manual_seed(ctx.seed)

    def predict() -> Any:
        net.eval()
        with torch.no_grad():
            pred = net(xv).squeeze(1)
            pred = torch.sigmoid(pred) if ctx.task == "classification" else pred
        return pred.cpu().numpy()

    def state(done: int) -> dict[str, Any]:
        return {"net": net.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                "rng": torch.get_rng_state(), "epochs": done}

    first = 0
    if resume is not None:
        net.load_state_dict(resume["net"])
        opt.load_state_dict(resume["opt"])
        for group in opt.param_groups:  # the optimiser's state, with this trial's settings: after a PBT
            group["lr"], group["weight_decay"] = lr, wd  # exploit the loaded ones are the donor's
        gen.set_state(resume["gen"])
        torch.set_rng_state(resume["rng"])
        first = int(resume["epochs"])
        yield first, predict(), lambda: resume
    for epoch in range(first, epochs):
        net.train()
        order = torch.randperm(len(yt), generator=gen).to(device)
        for start in range(0, len(yt), batch):
            idx = order[start:start + batch]
            mine = ddp.shard(idx)
            opt.zero_grad()
            # the batch's mean loss, whichever share of it this rank holds (the module docstring)
            loss = loss_fn(train_net(xt[mine]).squeeze(1), yt[mine]) * (world / len(idx))
            loss.backward()
            opt.step()
        # one report per epoch: the fidelity for early stopping
        yield epoch + 1, predict(), lambda done=epoch + 1: state(done)
