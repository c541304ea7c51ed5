#!/usr/bin/env python3
"""cdp_pipe.py - drive headless Chromium through the DevTools protocol over --remote-debugging-pipe, with the
standard library only (no websocket client, no Selenium): open URL, wait until a JavaScript expression gives
one of the wanted values, then write the page's DOM and a screenshot.

    cdp_pipe.py --chromium BIN --url URL --until 'document.body.dataset.state' --want done,error
                [--dom OUT.html] [--screenshot OUT.png] [--timeout S] [--size 1280x1500]

Prints the final value of the expression on stdout. Exit 0 when it reached a wanted value, 1 on timeout (the
DOM and screenshot are still written, for the record), 2 when the browser could not be driven.
The pipe protocol: Chromium reads commands on fd 3 and writes replies and events on fd 4, each message one
JSON object followed by a NUL byte."""
import argparse
import base64
import json
import os
import sys
import tempfile
import time


class Browser:
    def __init__(self, chromium, user_dir, log):
        cmd_r, self.cmd_w = os.pipe()
        self.out_r, out_w = os.pipe()
        args = [chromium, '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                '--no-first-run', '--no-default-browser-check', '--disable-extensions', '--mute-audio',
                '--user-data-dir=' + user_dir, '--remote-debugging-pipe', 'about:blank']
        actions = [(os.POSIX_SPAWN_DUP2, cmd_r, 3), (os.POSIX_SPAWN_DUP2, out_w, 4),
                   (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                   (os.POSIX_SPAWN_DUP2, 1, 2)]
        self.pid = os.posix_spawn(chromium, args, os.environ, file_actions=actions)
        os.close(cmd_r)
        os.close(out_w)
        self.buf = b''
        self.next_id = 0

    def _read_message(self, deadline):
        while b'\0' not in self.buf:
            if time.time() > deadline:
                raise TimeoutError('no reply from Chromium')
            chunk = os.read(self.out_r, 1 << 20)
            if not chunk:
                raise RuntimeError('Chromium closed the pipe (see its log)')
            self.buf += chunk
        msg, self.buf = self.buf.split(b'\0', 1)
        return json.loads(msg)

    def call(self, method, params=None, session=None, timeout=60):
        self.next_id += 1
        m = {'id': self.next_id, 'method': method, 'params': params or {}}
        if session:
            m['sessionId'] = session
        os.write(self.cmd_w, json.dumps(m).encode() + b'\0')
        deadline = time.time() + timeout
        while True:
            r = self._read_message(deadline)
            if r.get('id') == self.next_id:
                if 'error' in r:
                    raise RuntimeError('%s: %s' % (method, r['error']))
                return r.get('result', {})

    def close(self):
        try:
            self.call('Browser.close', timeout=10)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        for _ in range(50):
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                return
            time.sleep(0.1)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--chromium', required=True)
    ap.add_argument('--url', required=True)
    ap.add_argument('--until', required=True, help='JavaScript expression to poll')
    ap.add_argument('--want', required=True, help='comma-separated values that end the wait')
    ap.add_argument('--dom')
    ap.add_argument('--screenshot')
    ap.add_argument('--timeout', type=float, default=120)
    ap.add_argument('--size', default='1280x1500')
    ap.add_argument('--log', default=os.devnull, help="Chromium's stderr")
    a = ap.parse_args()
    want = a.want.split(',')
    w, h = (int(v) for v in a.size.split('x'))
    with tempfile.TemporaryDirectory(prefix='ds_chromium_') as ud:
        try:
            b = Browser(a.chromium, ud, a.log)
        except OSError as e:
            print('cannot start %s: %s' % (a.chromium, e), file=sys.stderr)
            return 2
        try:
            target = b.call('Target.createTarget', {'url': 'about:blank'})['targetId']
            s = b.call('Target.attachToTarget', {'targetId': target, 'flatten': True})['sessionId']
            b.call('Emulation.setDeviceMetricsOverride',
                   {'width': w, 'height': h, 'deviceScaleFactor': 1, 'mobile': False}, s)
            b.call('Page.enable', {}, s)
            b.call('Page.navigate', {'url': a.url}, s)
            deadline = time.time() + a.timeout
            value = None
            while time.time() < deadline:
                r = b.call('Runtime.evaluate', {'expression': a.until, 'returnByValue': True}, s)
                value = r.get('result', {}).get('value')
                if value in want:
                    break
                time.sleep(0.2)
            if a.dom:
                r = b.call('Runtime.evaluate', {'expression': 'document.documentElement.outerHTML',
                                                'returnByValue': True}, s)
                with open(a.dom, 'w', encoding='utf-8') as f:
                    f.write(r['result']['value'])
            if a.screenshot:
                r = b.call('Page.captureScreenshot', {'format': 'png'}, s)
                with open(a.screenshot, 'wb') as f:
                    f.write(base64.b64decode(r['data']))
            print(value)
            return 0 if value in want else 1
        except (RuntimeError, TimeoutError, OSError, KeyError) as e:
            print('cdp_pipe: %s' % e, file=sys.stderr)
            return 2
        finally:
            b.close()


if __name__ == '__main__':
    sys.exit(main())
