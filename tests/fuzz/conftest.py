"""Hypothesis profiles for the fuzz tests: bounded in CI, long by one command.

Every test in ``tests/fuzz`` takes its settings from ``fuzz_parts.FUZZ``, the profile named by the
environment variable ``RPROXY_FUZZ`` (default ``ci``). The profiles apply to these tests only, so
the rest of the suite keeps Hypothesis' defaults.

``ci`` (default)
    A modest number of examples per property (the whole directory runs in well under a minute on
    two cores), random but reported with ``print_blob=True``: a failure prints
    ``@reproduce_failure(...)`` and the falsifying example, and the example database replays it
    on the next local run.
``long``
    Many more examples, no deadline, not derandomized, so every long run explores new inputs::

        RPROXY_FUZZ=long .venv/bin/python -m pytest tests/fuzz -q --timeout=0 \
            --hypothesis-show-statistics

    ``RPROXY_FUZZ_EXAMPLES=N`` sets the number of examples per property (default 20000;
    5000 takes about ten minutes on two cores). See tests/fuzz/README.md.
    atheris (libFuzzer) drives the HTTP/1.1 parsing on its own, as long as you like::

        .venv/bin/python tests/fuzz/atheris_http1.py -max_total_time=600

No profile has a deadline: these tests assert properties, never how fast a machine is.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

CI_EXAMPLES = 150
LONG_EXAMPLES = int(os.environ.get("RPROXY_FUZZ_EXAMPLES", "20000"))

settings.register_profile(
    "rproxy-fuzz-ci",
    max_examples=CI_EXAMPLES,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "rproxy-fuzz-long",
    max_examples=LONG_EXAMPLES,
    deadline=None,
    print_blob=True,
    derandomize=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
