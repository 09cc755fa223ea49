"""A plain PyTorch loop measured with ``greenml.track`` and ``run.step``.

    python integrations/pytorch/train.py --steps 300 --max-energy-kwh 0.5

Each optimizer step is counted with its samples, tokens and FLOPs, so the run gets the
energy and CO2e per 1,000 samples and per million tokens, the model FLOPs utilisation, and a
forecast of the whole run; with a budget and ``--stop-on-budget`` the loop ends cleanly when
the budget is crossed (``GreenMLBudgetExceeded`` from ``run.step``). Settings not given here
come from ``GREENML_*`` variables (``GREENML_LOCATION``...) or ``pyproject.toml``.
"""

from __future__ import annotations

import argparse
import time

import torch

import greenml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--min-step-s", type=float, default=0.0, help="pad each step")
    parser.add_argument("--max-energy-kwh", type=float, default=None)
    parser.add_argument("--stop-on-budget", action="store_true")
    args = parser.parse_args()

    torch.manual_seed(0)
    vocab, width = 100, 64
    model = torch.nn.Sequential(
        torch.nn.Embedding(vocab, width),
        torch.nn.Linear(width, width),
        torch.nn.Linear(width, vocab),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = args.batch_size * args.seq_len
    # training FLOPs ~ 6 x parameters x tokens (forward 2, backward 4: Kaplan et al. 2020)
    params = sum(p.numel() for p in model.parameters())
    flops_per_step = 6 * params * tokens

    with greenml.track(
        max_energy_kwh=args.max_energy_kwh, stop_on_budget=args.stop_on_budget or None
    ) as run:
        run.set_total_steps(args.steps)
        try:
            for step in range(1, args.steps + 1):
                began = time.monotonic()
                ids = torch.randint(0, vocab, (args.batch_size, args.seq_len))
                logits = model(ids)
                loss = torch.nn.functional.cross_entropy(logits.view(-1, vocab), ids.view(-1))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                time.sleep(max(args.min_step_s - (time.monotonic() - began), 0.0))
                run.step(samples=args.batch_size, tokens=tokens, flops=flops_per_step)
                if step % 50 == 0:
                    run.log_point()
                if step % 100 == 0:
                    with run.phase("eval"), torch.no_grad():
                        model(torch.randint(0, vocab, (args.batch_size, args.seq_len)))
        except greenml.GreenMLBudgetExceeded as e:
            print(f"stopped at step {step}: {e.budget} crossed ({e.value:.4g} >= {e.limit:g})")
    fp = run.footprint
    print(f"steps={fp.steps} energy_kwh={fp.energy_kwh:.6g} co2e_kg={fp.co2e_kg}")
    print(f"energy_wh_per_1k_samples={fp.energy_wh_per_1k_samples:.4g} mfu={fp.mfu}")


if __name__ == "__main__":
    main()
