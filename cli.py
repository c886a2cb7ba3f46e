"""The ``coco`` command line (click). Thin: parse, call the library, format."""

from __future__ import annotations

import logging
import sys

import click

from coco_actors.errors import CocoError


@click.group()
@click.version_option(package_name="coco-actors", prog_name="coco")
@click.option("-v", "--verbose", is_flag=True, help="log every operation transition")
def main(verbose: bool) -> None:
    """coco-actors: a crash-safe Cashu ecash wallet."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)


@main.command()
@click.option("--fee", "input_fee_ppk", type=click.IntRange(0, 1000), default=100,
              show_default=True, help="input fee of the development mint, in ppk")
def demo(input_fee_ppk: int) -> None:
    """Run the wallet end to end against a local development mint."""
    from coco_actors.demo import run

    try:
        run(input_fee_ppk=input_fee_ppk, out=click.echo)
    except CocoError as exc:
        raise click.ClickException(str(exc)) from exc


if __name__ == "__main__":
    main()
