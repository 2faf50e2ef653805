#!/usr/bin/env python3
"""A device on Cloud IoT Core's HTTP bridge, written the way Google's Python
HTTP sample (cloudiot_http_example.py) talks to it: requests for HTTP, PyJWT
for the device's token, the bridge's base URL as the only change.

It reads the latest config (local_version=0), publishes events (or sets the
state) with URL-safe base64 payloads in snake_case JSON, and exits non-zero
on the first answer that is not 200. Passerelle's own script: no code of
Google's sample is copied.
"""
import argparse
import base64
import datetime
import json
import sys

import jwt
import requests


def device_token(project_id, private_key_file, algorithm):
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    claims = {"iat": now, "exp": now + datetime.timedelta(minutes=60), "aud": project_id}
    with open(private_key_file) as f:
        return jwt.encode(claims, f.read(), algorithm=algorithm)


def device_url(args):
    return "{}/projects/{}/locations/{}/registries/{}/devices/{}".format(
        args.base_url, args.project_id, args.cloud_region, args.registry_id, args.device_id)


def headers(token):
    return {"authorization": "Bearer {}".format(token),
            "content-type": "application/json", "cache-control": "no-cache"}


def check(what, resp):
    print("{}: {} {}".format(what, resp.status_code, resp.text.strip()))
    if resp.status_code != 200:
        sys.exit("{} failed with HTTP {}".format(what, resp.status_code))
    return resp


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--base_url", required=True)
    p.add_argument("--project_id", required=True)
    p.add_argument("--cloud_region", default="us-central1")
    p.add_argument("--registry_id", required=True)
    p.add_argument("--device_id", required=True)
    p.add_argument("--private_key_file", required=True)
    p.add_argument("--algorithm", choices=("RS256", "ES256"), default="ES256")
    p.add_argument("--ca_certs", required=True)
    p.add_argument("--message_type", choices=("event", "state"), default="event")
    p.add_argument("--num_messages", type=int, default=3)
    args = p.parse_args()

    token = device_token(args.project_id, args.private_key_file, args.algorithm)
    url = device_url(args)
    session = requests.Session()  # one keep-alive connection, as a device would
    cfg = check("config", session.get(url + "/config?local_version=0", headers=headers(token), verify=args.ca_certs))
    print("latest config version {}".format(cfg.json()["version"]))
    for i in range(1, args.num_messages + 1):
        payload = "{}/{}-payload-{}".format(args.registry_id, args.device_id, i)
        data = base64.urlsafe_b64encode(payload.encode("utf-8")).decode("ascii")
        if args.message_type == "event":
            body, verb = {"binary_data": data}, "publishEvent"
        else:
            body, verb = {"state": {"binary_data": data}}, "setState"
        check("{} {}".format(verb, i), session.post(url + ":" + verb, data=json.dumps(body),
                                                    headers=headers(token), verify=args.ca_certs))
    print("done")


if __name__ == "__main__":
    main()
