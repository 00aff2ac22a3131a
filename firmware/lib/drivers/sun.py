"""Sunrise and sunset from latitude, longitude and date: the NOAA solar calculator.

NOAA Global Monitoring Laboratory, "General Solar Position Calculations" and the NOAA sunrise/
sunset spreadsheet (after Meeus, Astronomical Algorithms): Julian century, the sun's geometric mean
longitude and anomaly, equation of centre, apparent longitude, obliquity, declination, equation of
time, and the hour angle for a solar zenith of 90.833° (refraction and the sun's radius).

ESP32 floats are single precision: the day count is kept relative to J2000 (small numbers) so
the result stays within a minute instead of drifting with a 2.45 million Julian day.
"""

import math

_ZENITH_DEG = 90.833


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z):
    """(year, month, day) of a day number since 1970-01-01."""
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return y + (m <= 2), m, d


_J2000_DAY = 10957  # 2000-01-01 as days since 1970-01-01


def _solar(day, minute_utc):
    """(declination rad, equation of time min) at ``minute_utc`` of ``day`` (days since 1970)."""
    # Julian century from J2000.0 (2000-01-01 12:00 UT): 0.5 day offset kept separate for precision
    t = ((day - _J2000_DAY) + (minute_utc / 1440.0 - 0.5)) / 36525.0
    l0 = (280.46646 + t * (36000.76983 + t * 0.0003032)) % 360
    m = 357.52911 + t * (35999.05029 - 0.0001537 * t)
    e = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    mr = math.radians(m)
    c = (
        math.sin(mr) * (1.914602 - t * (0.004817 + 0.000014 * t))
        + math.sin(2 * mr) * (0.019993 - 0.000101 * t)
        + math.sin(3 * mr) * 0.000289
    )
    true_long = l0 + c
    omega = 125.04 - 1934.136 * t
    app_long = true_long - 0.00569 - 0.00478 * math.sin(math.radians(omega))
    mean_obliq = 23 + (26 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60) / 60
    obliq = mean_obliq + 0.00256 * math.cos(math.radians(omega))
    decl = math.asin(math.sin(math.radians(obliq)) * math.sin(math.radians(app_long)))
    y = math.tan(math.radians(obliq / 2)) ** 2
    l0r = math.radians(l0)
    eq_time = 4 * math.degrees(
        y * math.sin(2 * l0r)
        - 2 * e * math.sin(mr)
        + 4 * e * y * math.sin(mr) * math.cos(2 * l0r)
        - 0.5 * y * y * math.sin(4 * l0r)
        - 1.25 * e * e * math.sin(2 * mr)
    )
    return decl, eq_time


def _event(day, lat, lon, sign):
    minute = 720.0
    for _ in range(2):  # second pass evaluates the sun at the event itself, not at noon
        decl, eq_time = _solar(day, minute)
        latr = math.radians(lat)
        cos_ha = math.cos(math.radians(_ZENITH_DEG)) / (math.cos(latr) * math.cos(decl)) - (
            math.tan(latr) * math.tan(decl)
        )
        if cos_ha > 1 or cos_ha < -1:
            return None  # polar night or midnight sun: no such event that day
        ha = math.degrees(math.acos(cos_ha))
        minute = 720 - 4 * lon - eq_time + sign * 4 * ha
    return minute


def sunrise_sunset_utc(day, lat, lon):
    """(sunrise, sunset) in minutes after 00:00 UTC of ``day`` (days since 1970-01-01); either
    may be ``None`` near the poles. Longitude is east-positive."""
    return _event(day, lat, lon, -1), _event(day, lat, lon, +1)


def _last_sunday(year, month):
    last = days_from_civil(year, month + 1, 1) - 1 if month < 12 else days_from_civil(year, 12, 31)
    return last - (last + 4) % 7  # 1970-01-01 was a Thursday (weekday 4 with Sunday = 0)


def utc_offset_min(unix_time, base_offset_min=60, dst="eu"):
    """Local time offset: ``base_offset_min`` plus an hour in EU summer time (Directive 2000/84/EC:
    from 01:00 UTC on the last Sunday of March to 01:00 UTC on the last Sunday of October)."""
    if dst != "eu":
        return base_offset_min
    day = unix_time // 86400
    year = civil_from_days(day)[0]
    start = _last_sunday(year, 3) * 86400 + 3600
    end = _last_sunday(year, 10) * 86400 + 3600
    return base_offset_min + (60 if start <= unix_time < end else 0)
