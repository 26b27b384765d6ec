"""A trivial flow served on an interval schedule by tests/flows/test_schedule.py."""

from prefect import flow, serve


@flow(name="schedule-probe")
def probe() -> str:
    return "ticked"


if __name__ == "__main__":
    serve(probe.to_deployment(name="every-3s", interval=3))
