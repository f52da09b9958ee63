"""`vod-events dlq list` and `vod-events dlq replay`: look at dead letters and send chosen
ones back to their source queue.

Replay sends the original body unchanged and removes the dead letter only after the send
succeeded, so a failure half-way leaves at worst a letter that was replayed but not removed
(the idempotency store then skips the event if it was handled) — never a lost one.

`list` piped into a reader that stops early (`| head`) exits 141 without a traceback (see
`vod_events.cli`); letters received from a dead-letter queue are handed back first.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from vod_events.cli import config_error
from vod_events.config import Config, load
from vod_events.deadletter import CALLBACK_SOURCE, DeadLetter, DirectorySink
from vod_events.errors import ConfigError
from vod_events.service.assemble import require_credentials, transport_factory
from vod_events.transports import Transport, TransportError, TransportFactory

EXCERPT = 80


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the daemon's TOML config file")
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="show dead letters and their reasons")
    listing.add_argument("--json", action="store_true", help="one JSON object per letter")
    replay = sub.add_parser("replay", help="send dead letters back to their source queue")
    replay.add_argument("--id", action="append", default=[], help="letter id (repeatable)")
    replay.add_argument("--all", action="store_true", help="replay every dead letter")


@dataclass
class _Held:
    """A dead letter and how to remove it from where it is kept."""

    letter: DeadLetter
    handle: str = ""  # DLQ receipt handle; empty for a file
    handed_back: bool = False


class _Target:
    """The configured dead-letter target, read and written by one thread."""

    def __init__(self, config: Config, connect: TransportFactory) -> None:
        self.config = config
        self.connect = connect
        self.queue: Transport | None = (
            connect(config.dead_letter.queue) if config.dead_letter.queue else None
        )
        self.directory = DirectorySink(config.dead_letter_dir)

    def letters(self) -> list[_Held]:
        """Every dead letter. From a queue they are received (hidden) until handed back."""
        if self.queue is None:
            return [_Held(letter) for letter in self.directory.list()]
        # A queue cannot be listed without receiving: take them all first, so none comes
        # back into view (and is listed twice) before we are done.
        held: dict[str, _Held] = {}
        while True:
            batch = [m for m in self.queue.receive(16, 0) if m.message_id not in held]
            if not batch:
                return list(held.values())
            for message in batch:
                letter = DeadLetter.from_queue_message(message, self.config.mns.queue)
                held[message.message_id] = _Held(letter, message.receipt_handle)

    def remove(self, held: _Held) -> None:
        if self.queue is None:
            self.directory.remove(held.letter.letter_id)
        else:
            self.queue.delete([held.handle])

    def hand_back(self, held: _Held) -> None:
        if self.queue is not None:
            self.queue.change_visibility(held.handle, 1)


def run(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
        if config.dead_letter.queue or args.action == "replay":
            require_credentials(config)  # only a letter directory can do without
        target = _Target(config, transport_factory(config))
    except ConfigError as exc:
        return config_error(exc)
    try:
        if args.action == "list":
            return _list(target, as_json=args.json)
        if not args.id and not args.all:
            print("vod-events dlq replay: give --id ID (repeatable) or --all", file=sys.stderr)
            return 2
        return _replay(target, set(args.id), replay_all=args.all)
    except TransportError as exc:
        print(f"vod-events dlq: {exc}", file=sys.stderr)
        return 1


def _list(target: _Target, *, as_json: bool) -> int:
    letters = target.letters()
    try:
        return _print(target, letters, as_json=as_json)
    except BrokenPipeError:  # nobody reads on: give back what is still held
        for held in letters:
            if not held.handed_back:
                target.hand_back(held)
        raise


def _print(target: _Target, letters: list[_Held], *, as_json: bool) -> int:
    count = 0
    for held in letters:
        letter = held.letter
        if as_json:
            print(json.dumps({"id": letter.letter_id, **letter.to_json()}, ensure_ascii=False))
        else:
            body = letter.body.replace("\n", " ")
            excerpt = body[:EXCERPT] + ("…" if len(body) > EXCERPT else "")
            print(f"{letter.letter_id}")
            print(f"  reason:   {letter.reason}")
            print(
                f"  message:  {letter.message_id} from {letter.source_queue}, "
                f"delivered {letter.dequeue_count}x, last failure {letter.last_failure}"
            )
            print(f"  body:     {excerpt}")
        target.hand_back(held)
        held.handed_back = True
        count += 1
    if not as_json:
        print(f"{count} dead letter(s)")
    return 0


def _replay(target: _Target, ids: set[str], *, replay_all: bool) -> int:
    senders: dict[str, Transport] = {}
    replayed = 0
    for held in target.letters():
        letter = held.letter
        if not replay_all and letter.letter_id not in ids:
            target.hand_back(held)
            continue
        # A callback's letter has no queue of its own: it goes to the daemon's queue.
        queue = letter.source_queue
        if not queue or queue == CALLBACK_SOURCE:
            queue = target.config.mns.queue
        sender = senders.get(queue) or senders.setdefault(queue, target.connect(queue))
        new_id = sender.send(letter.body)  # the body unchanged
        target.remove(held)  # only after the send succeeded
        ids.discard(letter.letter_id)
        replayed += 1
        print(f"replayed {letter.letter_id} to {queue} as message {new_id}")
    for missing in sorted(ids):
        print(f"vod-events dlq replay: no dead letter with id {missing!r}", file=sys.stderr)
    print(f"{replayed} dead letter(s) replayed")
    return 1 if ids else 0
