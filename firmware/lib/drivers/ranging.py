"""Robust distance from N noisy readings: the median, then outlier rejection around it.

Ultrasonic sensors in a bin see the lid, a bag edge or a spray of echoes; one ToF reading can
catch a fly. Readings further than ``max(tolerance_mm, tolerance_ratio * median)`` from the median
are dropped and the rest are averaged. Too few valid readings means a sensor fault (``None``).
"""


def median(values):
    s = sorted(values)
    n = len(s)
    if n == 0:
        return None
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2


def robust_distance(readings, min_valid=3, tolerance_mm=50, tolerance_ratio=0.1):
    """The filtered distance in mm, or ``None`` when fewer than ``min_valid`` readings agree."""
    valid = [r for r in readings if r is not None]
    if len(valid) < min_valid:
        return None
    m = median(valid)
    if m is None:
        return None
    bound = max(tolerance_mm, tolerance_ratio * m)
    kept = [r for r in valid if abs(r - m) <= bound]
    if len(kept) < min_valid:
        return None
    return int(sum(kept) / len(kept) + 0.5)


async def sample(sensor, n, clock, gap_ms):
    """``n`` readings from ``sensor.read_mm()`` spaced ``gap_ms`` apart (virtual time)."""
    out = []
    for i in range(n):
        if i:
            await clock.sleep_ms(gap_ms)
        out.append(await sensor.read_mm())
    return out


def fill_percent(distance_mm, container_height_cm, sensor_offset_cm):
    """Fill from the measured distance: the sensor sits ``sensor_offset_cm`` above the level
    at which the container counts as full (100 %), and the bottom is ``container_height_cm``
    below that level (0 %). Clamped to 0..100 (TALQ FillingLevelSensorFunction.fillingPercentage).
    """
    if container_height_cm <= 0:
        return None
    level_cm = container_height_cm - (distance_mm / 10.0 - sensor_offset_cm)
    pct = int(level_cm * 100 / container_height_cm + 0.5)
    return 0 if pct < 0 else 100 if pct > 100 else pct
