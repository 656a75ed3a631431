"""`python -m emulator`: run the local STS + OSS emulator.

Without flags it serves what the app server's embedded settings expect: 127.0.0.1:9100, bucket
app-uploads, the development root key pair and one role, with objects kept in ./var/emulator.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from emulator.config import (
    DEFAULT_MAX_SESSION_DURATION,
    EmulatorConfig,
    Role,
    default_role_policy,
    load_config_file,
)
from emulator.server import Emulator

DEFAULT_DATA_DIR = Path("var/emulator")


def _parse_role(text: str, policy: dict | None, buckets: tuple[str, ...]) -> Role:
    arn, _, duration = text.partition(",")
    if not arn.startswith("acs:ram::") or ":role/" not in arn:
        raise argparse.ArgumentTypeError(f"not a role ARN: {arn!r}")
    max_duration = int(duration) if duration else DEFAULT_MAX_SESSION_DURATION
    if not 3600 <= max_duration <= 43200:
        raise argparse.ArgumentTypeError("a role's maximum session duration is 3600 to 43200")
    return Role(
        arn=arn,
        policy=policy if policy is not None else default_role_policy(buckets),
        max_session_duration=max_duration,
    )


def _roles_from_file(items: list[dict], buckets: tuple[str, ...]) -> tuple[Role, ...]:
    roles = []
    for item in items:
        policy = item.get("policy")
        if isinstance(policy, str):
            policy = json.loads(Path(policy).read_text())
        roles.append(
            Role(
                arn=item["arn"],
                policy=policy if policy is not None else default_role_policy(buckets),
                max_session_duration=int(
                    item.get("max_session_duration", DEFAULT_MAX_SESSION_DURATION)
                ),
                trusted_accounts=tuple(item.get("trusted_accounts", ()))
                or Role.__dataclass_fields__["trusted_accounts"].default,
            )
        )
    return tuple(roles)


def build_config(argv: list[str] | None = None) -> EmulatorConfig:
    defaults = EmulatorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m emulator", description="Local Alibaba Cloud STS + OSS emulator."
    )
    parser.add_argument("--config", type=Path, help="JSON file whose keys mirror the flags")
    parser.add_argument("--host", help=f"default {defaults.host}")
    parser.add_argument("--port", type=int, help=f"default {defaults.port}; 0 picks a free port")
    storage = parser.add_mutually_exclusive_group()
    storage.add_argument("--data-dir", type=Path, help=f"default ./{DEFAULT_DATA_DIR}")
    storage.add_argument("--memory", action="store_true", help="keep nothing after exit")
    parser.add_argument("--access-key-id", help="root AccessKey id")
    parser.add_argument("--access-key-secret", help="root AccessKey secret")
    parser.add_argument("--account-id")
    parser.add_argument("--region", help=f"default {defaults.region}")
    parser.add_argument("--bucket", action="append", help="bucket to create at start (repeatable)")
    parser.add_argument(
        "--role",
        action="append",
        help="ARN[,max_session_duration] of a role root keys may assume (repeatable)",
    )
    parser.add_argument(
        "--role-policy", type=Path, help="JSON policy file for the roles given with --role"
    )
    parser.add_argument("--callback-timeout", type=float)
    parser.add_argument(
        "--image-style",
        action="append",
        metavar="NAME=PROCESS",
        help="an image style for x-oss-process=style/NAME, e.g. "
        "thumb=image/resize,w_256/format,webp (repeatable)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request line")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    file_values = load_config_file(args.config) if args.config else {}

    def pick(flag: object, name: str, default: object) -> object:
        if flag is not None:
            return flag
        return file_values.get(name, default)

    buckets = tuple(args.bucket or file_values.get("buckets") or defaults.buckets)
    if args.memory:
        data_dir = None
    elif args.data_dir is not None:
        data_dir = args.data_dir
    elif "data_dir" in file_values:
        data_dir = Path(file_values["data_dir"]) if file_values["data_dir"] else None
    else:
        data_dir = DEFAULT_DATA_DIR
    roles: tuple[Role, ...] = ()
    if args.role:
        policy = json.loads(args.role_policy.read_text()) if args.role_policy else None
        try:
            roles = tuple(_parse_role(text, policy, buckets) for text in args.role)
        except argparse.ArgumentTypeError as exc:
            parser.error(str(exc))
    elif file_values.get("roles"):
        roles = _roles_from_file(file_values["roles"], buckets)
    styles = dict(file_values.get("image_styles") or {})
    for text in args.image_style or []:
        name, sep, process = text.partition("=")
        if not sep:
            parser.error(f"--image-style wants NAME=PROCESS, not {text!r}")
        styles[name] = process
    return EmulatorConfig(
        host=str(pick(args.host, "host", defaults.host)),
        port=int(pick(args.port, "port", defaults.port)),  # type: ignore[arg-type]
        data_dir=data_dir,
        region=str(pick(args.region, "region", defaults.region)),
        account_id=str(pick(args.account_id, "account_id", defaults.account_id)),
        root_access_key_id=str(
            pick(args.access_key_id, "root_access_key_id", defaults.root_access_key_id)
        ),
        root_access_key_secret=str(
            pick(args.access_key_secret, "root_access_key_secret", defaults.root_access_key_secret)
        ),
        buckets=buckets,
        roles=roles,
        callback_timeout_seconds=float(
            pick(args.callback_timeout, "callback_timeout_seconds", 5.0)  # type: ignore[arg-type]
        ),
        image_styles=styles,
    )


def main(argv: list[str] | None = None) -> int:
    config = build_config(argv)
    try:
        emulator = Emulator(config)
    except (ValueError, OSError) as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT explicitly too: started in the background of a script, a process inherits SIGINT
    # ignored, and Python then installs no Ctrl-C handler of its own. Installed before the
    # banner: whoever waits for the banner may signal at once.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    try:
        print(f"Alibaba Cloud emulator (STS + OSS) listening on {emulator.endpoint}", flush=True)
        print(f"  region:       {config.region}")
        print(f"  buckets:      {', '.join(config.buckets)}")
        for role in config.effective_roles():
            print(f"  role:         {role.arn} (max session {role.max_session_duration}s)")
        print(f"  root key id:  {config.root_access_key_id}")
        print(f"  callback key: {emulator.public_key_url}")
        for name, process in config.image_styles.items():
            print(f"  image style:  {name} = {process}")
        where = config.data_dir if config.data_dir is not None else "memory (nothing kept)"
        print(f"  data:         {where}", flush=True)
        emulator.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
