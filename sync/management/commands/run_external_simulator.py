"""Serve the external-system simulator (see sync/simulator.py)."""

import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sync.simulator import ExternalSimulator
from sync.simulator_server import LOOPBACK_HOSTS, SimulatorServer


def _exit(signum, frame):
    raise SystemExit(0)


def rate(value: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError("a rate is between 0 and 1")
    return number


class Command(BaseCommand):
    help = "Run the external-system simulator: the external API contract with seed-like latencies and faults."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument(
            "--latency-scale", type=float, default=1.0, help="multiplies the per-resource latencies (0 for none)"
        )
        parser.add_argument("--token", default=settings.SYNC_API_TOKEN, help="bearer token to require")
        parser.add_argument("--error-rate", type=rate, default=0.0, help="share of calls answered 503")
        parser.add_argument("--timeout-rate", type=rate, default=0.0, help="share of calls held past the timeout")
        parser.add_argument(
            "--lost-response-rate", type=rate, default=0.0, help="share of calls applied whose response is lost"
        )
        parser.add_argument(
            "--timeout-seconds",
            type=float,
            default=settings.SYNC_HTTP_TIMEOUT + 5,
            help="how long a timed-out call is held",
        )
        parser.add_argument("--retry-after", type=int, default=None, help="Retry-After seconds sent with 503s")
        parser.add_argument("--seed", type=int, default=None)

    def handle(self, *args, **options):
        if options["error_rate"] + options["timeout_rate"] + options["lost_response_rate"] > 1:
            raise CommandError("The fault rates add up to more than 1.")
        if options["host"] not in LOOPBACK_HOSTS and not options["token"]:
            raise CommandError(
                "A simulator other hosts can reach needs a token (--token or SYNC_API_TOKEN): "
                "its controls reset and fault the external system."
            )
        simulator = ExternalSimulator(
            latency_scale=options["latency_scale"],
            token=options["token"],
            error_rate=options["error_rate"],
            timeout_rate=options["timeout_rate"],
            lost_response_rate=options["lost_response_rate"],
            timeout_seconds=options["timeout_seconds"],
            retry_after=options["retry_after"],
            seed=options["seed"],
        )
        server = SimulatorServer((options["host"], options["port"]), simulator)
        signal.signal(signal.SIGTERM, _exit)
        self.stdout.write(f"External simulator on {server.url} (latency scale {options['latency_scale']:g})")
        try:
            server.serve_forever()
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            server.server_close()
