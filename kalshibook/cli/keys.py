"""`kalshibook keys create|list|revoke|topup`: API keys and their credits."""

from __future__ import annotations

import argparse

import psycopg

from kalshibook.cli.common import check_schema_sync
from kalshibook.settings import Settings
from kalshibook.storage import api_keys
from kalshibook.storage.urls import unreachable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--credits", type=int, required=True, help="starting credit balance")
    sub.add_parser("list", help="list keys (prefix, name, credits, state)")
    revoke = sub.add_parser("revoke", help="revoke a key by its prefix")
    revoke.add_argument("prefix")
    topup = sub.add_parser("topup", help="add credits to a key")
    topup.add_argument("prefix")
    topup.add_argument("--credits", type=int, required=True)


def run(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.require_database()
    check_schema_sync(url)
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise unreachable(url, exc) from None
    with conn:
        if args.action == "create":
            issued = api_keys.create_key(conn, name=args.name, credits=args.credits)
            print(f"created API key {issued.prefix} ({issued.name}, {issued.credits} credits)")
            print("store it now, it is not shown again:")
            print(issued.key)
        elif args.action == "list":
            keys = api_keys.list_keys(conn)
            print(
                f"{'PREFIX':<10} {'CREDITS':>14} {'REQUESTS':>10} {'STATE':<8} {'LAST USED':<25}",
                "NAME",
            )
            for k in keys:
                state = "revoked" if k.revoked_at else "active"
                last = k.last_used_at.isoformat(timespec="seconds") if k.last_used_at else "-"
                print(
                    f"{k.prefix:<10} {k.credits:>14} {k.requests:>10} {state:<8} {last:<25}", k.name
                )
        elif args.action == "revoke":
            when = api_keys.revoke_key(conn, args.prefix)
            print(f"revoked {args.prefix} at {when.isoformat(timespec='seconds')}")
        else:
            balance = api_keys.topup_key(conn, args.prefix, args.credits)
            print(f"{args.prefix}: {balance} credits")
    return 0
