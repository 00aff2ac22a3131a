from tools.bench.report import Figure


def run() -> list[Figure]:
    raise RuntimeError("broker not reachable")
