"""``eossl sensors [NAME]``: the sensor catalog, or one sensor's bands."""

from __future__ import annotations

import argparse

NAME = "sensors"
HELP = "list sensors, or show one sensor's bands"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?")


def cli(args: argparse.Namespace) -> int:
    from eossl.catalog.sensors import list_sensors, load_sensor

    if not args.name:
        for name in list_sensors():
            s = load_sensor(name)
            print(f"{name:22s} {len(s.bands):2d} bands  {s.description}")
        return 0
    s = load_sensor(args.name)
    print(f"{s.name}: {s.description}\n")
    print(f"{'band':7s} {'common':10s} {'nm':>8s} {'width':>6s} {'gsd':>5s} {'scale':>9s} {'offset':>7s} "
          f"{'nodata':>7s} {'mean':>8s} {'std':>8s}  aliases")
    for b in s.bands:
        print(f"{b.name:7s} {b.common_name or '':10s} {b.wavelength_nm:8.1f} {b.bandwidth_nm:6.1f} {b.gsd_m:5g} "
              f"{b.scale:9.3g} {b.offset:7.3g} {str(b.nodata):>7s} {s.normalization.mean[b.name]:8.4f} "
              f"{s.normalization.std[b.name]:8.4f}  {', '.join(b.aliases)}")
    print(f"\nnormalisation: {s.normalization.source}")
    return 0
