"""Benchmarks run by `make bench` (`citypack bench all`); see :mod:`tools.bench.report`.

Add a benchmark by writing ``tools/bench/<name>.py`` with ``run() -> list[Figure]`` and listing
its name here.
"""

BENCHMARKS: tuple[str, ...] = (
    "lorawan_crypto",
    "sim_speed",
    "payload_size",
    "codec_throughput",
    "gateway_throughput",
    "gateway_fleet",
    "firmware_mac",
    "firmware_apps",
    "group_override",
    "city_outcomes",
    "registry_throughput",
    "fuota_firmware",
    "fuota_campaign",
)
