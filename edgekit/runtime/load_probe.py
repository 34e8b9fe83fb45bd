"""The child process that loads a bundle first (runtime/isolate.py): if the runtime's native parser crashes on
the model file, this process dies, not the caller.

    python -m edgekit.runtime.load_probe BUNDLE BACKEND THREADS OPTIONS_JSON
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

from edgekit.core.errors import BundleError, EdgekitError
from edgekit.runtime.isolate import BUNDLE_TAG


def main(argv: Sequence[str]) -> None:
    from edgekit.runtime.model import BundleModel

    bundle, backend, threads, options = argv
    try:
        BundleModel.open(bundle, backend=backend or None, threads=int(threads) if threads else None,
                         options=json.loads(options))  # fmt: skip
    except EdgekitError as exc:  # the caller raises the same kind (BundleError or not) with this message
        kind = BUNDLE_TAG if isinstance(exc, BundleError) else ""
        print("error: " + kind + " ".join(str(exc).split()), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
