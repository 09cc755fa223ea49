#!/usr/bin/env python3
"""A stand-in ``nvidia-smi`` for machines with a simulated NVIDIA driver.

CodeCarbon 3.3 looks for NVIDIA GPUs only when ``nvidia-smi --help`` runs and exits 0
(``codecarbon.core.gpu_nvidia.is_nvidia_system``); everything it measures then comes
through pynvml, which the benchmark points at greenml's simulated driver. So this answers
``--help`` (exit 0) and ``-L`` (the GPU list, from ``GREENML_PEERS_SMI_GPUS``: one name
per line), and refuses anything else with exit 2, so a caller that asks for more than
detection fails loudly instead of reading made-up numbers.

peers.py writes a two-line ``nvidia-smi`` shell script that runs this file with its own
Python, in a temporary folder it puts first on CodeCarbon's ``PATH``.
"""

import os
import sys

ENV_GPUS = "GREENML_PEERS_SMI_GPUS"


def main(argv: list[str]) -> int:
    if argv[:1] in (["--help"], ["-h"]):
        print("NVIDIA System Management Interface -- greenml benchmark stand-in")
        print("Supported here: --help, -L (list GPUs). The GPUs are simulated.")
        return 0
    if argv[:1] in (["-L"], ["--list-gpus"]):
        names = [n for n in os.environ.get(ENV_GPUS, "").split("\n") if n]
        for i, name in enumerate(names):
            print(f"GPU {i}: {name} (UUID: simulated)")
        return 0
    print(
        f"nvidia-smi stand-in: {' '.join(argv) or '(no arguments)'} is not supported "
        "(only --help and -L)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
