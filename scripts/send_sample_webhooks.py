#!/usr/bin/env python3
"""Sends a handful of signed sample bookings for last month to ingest, as a forwarder would.

Signs with the Standard Webhooks scheme using only Python's standard library: an independent
implementation of the signature that ingest verifies. Usage:
    send_sample_webhooks.py TENANTS_JSON SECRETS_JSON INGEST_URL RUN_ID [TENANT_ID...]
(only the named tenants when some are named). SECRETS_JSON is ingest's tenant secrets file
(deploy/tenant-secrets/ingest.example.json): the webhook secrets are there, not in TENANTS_JSON.
"""
import base64
import datetime
import hashlib
import hmac
import json
import sys
import urllib.error
import urllib.request
from zoneinfo import ZoneInfo

SAMPLES = {  # per currency: (price, status, day of month, local time, service)
    "AUD": [
        ("150.00", "confirmed", 3, "10:00", "Remedial massage 60 min"),
        ("95.50", "completed", 12, "14:30", "Relaxation massage 45 min"),
        ("10.01", "confirmed", 20, "09:15", "Follow-up call"),
        ("180.00", "cancelled", 22, "16:00", "Deep tissue 90 min"),
        ("120.00", "confirmed", -1, "23:30", "Evening session 60 min"),  # the last day
    ],
    "JPY": [
        ("8000", "confirmed", 5, "11:00", "Shiatsu 60 min"),
        ("12003", "completed", 18, "18:00", "Shiatsu 90 min"),
    ],
}


def last_month(zone):
    today = datetime.datetime.now(ZoneInfo(zone)).date()
    last_day = today.replace(day=1) - datetime.timedelta(days=1)
    return last_day.replace(day=1), last_day


def sign(secret, msg_id, ts, body):
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def main(tenants_file, secrets_file, url, run_id, *only):
    secrets = json.load(open(secrets_file))["tenants"]
    tenants = [{**t, **secrets.get(t["id"], {})} for t in json.load(open(tenants_file))["tenants"]
               if not only or t["id"] in only]
    for n_tenant, tenant in enumerate(tenants):
        first, last = last_month(tenant.get("time_zone", "Australia/Sydney"))
        for n, (price, status, day, hhmm, service) in enumerate(SAMPLES.get(tenant["currency"], [])):
            date = last if day == -1 else first.replace(day=day)
            booking_id = f"{run_id}{n_tenant}{n:02d}"
            body = json.dumps({
                "booking_id": booking_id,
                "booking_hash": hashlib.md5(booking_id.encode()).hexdigest(),
                "status": status,
                "price": price,
                "currency": tenant["currency"],
                "datetime": f"{date.isoformat()} {hhmm}:00",
                "service": {"id": str(n + 1), "name": service, "duration": 60},
                "client": {"name": "Sample Client", "email": "client@example.test"},
                "provider": {"name": tenant["name"]},
            }).encode()
            msg_id = f"msg_{booking_id}"
            ts = str(int(datetime.datetime.now().timestamp()))
            request = urllib.request.Request(
                f"{url}/api/v1/webhooks/simplybook/{tenant['id']}", data=body, method="POST",
                headers={
                    "content-type": "application/json",
                    "webhook-id": msg_id,
                    "webhook-timestamp": ts,
                    "webhook-signature": sign(tenant["webhook_secrets"][0], msg_id, ts, body),
                })
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    code = response.status
            except urllib.error.HTTPError as err:
                code = err.code
            print(f"  {tenant['id']:<8} booking {booking_id}  {price:>8} {tenant['currency']}  "
                  f"{status:<9} {date} {hhmm}  -> HTTP {code}")
            if code not in (200, 202):
                sys.exit(f"ingest refused booking {booking_id}")


if __name__ == "__main__":
    main(*sys.argv[1:])
