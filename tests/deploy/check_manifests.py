#!/usr/bin/env python3
"""check_manifests.py ROOT METRICS HELP - the deployment files against the server they deploy: parses
deploy/compose.yaml, deploy/k8s/*.yaml, deploy/prometheus/*.yml, the Dockerfile and .dockerignore, and asserts
the fields that matter. METRICS is a live /metrics text of the real binary and HELP its `ditserve --help`
output, so every metric a rule, an alert or the autoscaler names, and every flag and DITSERVE_* variable the
files pass, must really exist. Prints one line per check; exits 1 on any failure."""
import re
import sys

import yaml

root, metrics_file, help_file = sys.argv[1:4]
metrics_text = open(metrics_file).read()
help_text = open(help_file).read()
exported = set(re.findall(r'^# TYPE (\S+) \S+$', metrics_text, re.M))
failed = 0


def check(cond, what):
    global failed
    print(('ok   ' if cond else 'FAIL ') + what)
    if not cond:
        failed = 1
    return cond


def load(rel):
    with open(root + '/' + rel) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def metric_names(expr):
    """Metric names an expression uses (histogram series map to their family)."""
    names = set(re.findall(r'\b((?:ditserve|process)_[a-z_]+)', expr))
    return {re.sub(r'_(bucket|sum|count)$', '', n) if re.sub(r'_(bucket|sum|count)$', '', n) in exported else n
            for n in names}


def flags_known(args, what):
    flags = [a for a in args if a.startswith('--')]
    unknown = [f for f in flags if not re.search(r'^\s+%s\s' % re.escape(f), help_text, re.M)]
    check(not unknown, '%s: flags %s are in ditserve --help%s' % (what, ' '.join(flags),
                                                                    ' (unknown: %s)' % unknown if unknown else ''))


check(len(exported) >= 15, 'the live /metrics exports %d metric families' % len(exported))

# ---- Kubernetes ---------------------------------------------------------------------------------------
docs = {}
for rel in ['deployment.yaml', 'service.yaml', 'hpa.yaml', 'prometheus.yaml', 'prometheus-adapter.yaml',
            'servicemonitor.yaml']:
    for d in load('deploy/k8s/' + rel):
        docs[d['kind']] = d
dep, svc, hpa = docs['Deployment'], docs['Service'], docs['HorizontalPodAutoscaler']
check(dep['apiVersion'] == 'apps/v1', 'Deployment apps/v1')
pod = dep['spec']['template']
labels = pod['metadata']['labels']
check(all(labels.get(k) == v for k, v in dep['spec']['selector']['matchLabels'].items()),
      'Deployment selector matches its pod labels')
c = pod['spec']['containers'][0]
port = {p['name']: p['containerPort'] for p in c['ports']}
check(port.get('http') == 8080, 'container port http = 8080 (the image listens on DITSERVE_PORT=8080)')
res = c['resources']
check(str(res['limits'].get('nvidia.com/gpu')) == '1' and str(res['requests'].get('nvidia.com/gpu')) == '1',
      'one nvidia.com/gpu requested and limited (one worker, one queue per replica)')
check('memory' in res['limits'] and 'memory' in res['requests'] and 'cpu' in res['requests'],
      'memory limit, memory and cpu requests')
for probe in ['readinessProbe', 'livenessProbe', 'startupProbe']:
    g = c.get(probe, {}).get('httpGet', {})
    check(g.get('path') == '/health' and port.get(g.get('port'), g.get('port')) == 8080,
          '%s: GET /health on 8080' % probe)
sp = c['startupProbe']
check(sp['periodSeconds'] * sp['failureThreshold'] >= 600, 'startupProbe allows >= 10 min to load and warm up')
check(c['readinessProbe']['periodSeconds'] <= 10, 'readiness checked at least every 10 s')
flags_known(c['args'], 'Deployment args')
env = {e['name']: e for e in c.get('env', [])}
check(all(re.search(r'\b%s\b' % n, help_text) for n in env), 'Deployment env %s are ditserve variables' % sorted(env))
check(env.get('DITSERVE_API_KEY', {}).get('valueFrom', {}).get('secretKeyRef', {}).get('name') == 'ditserve-api-key',
      'API key from a Secret')
sc = pod['spec']['securityContext']
check(sc.get('runAsNonRoot') is True and sc.get('runAsUser') == 10001, 'runs as non-root user 10001 (the image user)')
check(c['securityContext'].get('readOnlyRootFilesystem') is True, 'read-only root filesystem')
check(any(m['mountPath'] == '/models' and m.get('readOnly') for m in c['volumeMounts']), 'models mounted read-only')
check(pod['spec']['terminationGracePeriodSeconds'] >= 60, 'grace period lets jobs finish after SIGTERM')
check(dep['spec']['strategy']['rollingUpdate']['maxUnavailable'] == 0, 'rolling update keeps capacity')

check(svc['apiVersion'] == 'v1' and all(labels.get(k) == v for k, v in svc['spec']['selector'].items()),
      'Service selects the Deployment pods')
sport = svc['spec']['ports'][0]
check(sport['targetPort'] in ('http', 8080), 'Service targets the http port')
check(svc['spec'].get('sessionAffinity') == 'ClientIP', 'Service keeps a client on one replica (async job follow-ups)')

check(hpa['apiVersion'] == 'autoscaling/v2', 'HPA autoscaling/v2')
ref = hpa['spec']['scaleTargetRef']
check(ref['kind'] == 'Deployment' and ref['name'] == dep['metadata']['name'], 'HPA scales the Deployment')
check(1 <= hpa['spec']['minReplicas'] <= hpa['spec']['maxReplicas'], 'HPA min <= max')
hm = [m['pods']['metric']['name'] for m in hpa['spec']['metrics'] if m['type'] == 'Pods']
check(hm == ['ditserve_queue_depth'], 'HPA scales on ditserve_queue_depth')
check(all(n in exported for n in hm), 'the HPA metric is exported by /metrics')
adapter = yaml.safe_load(load('deploy/k8s/prometheus-adapter.yaml')[0]['data']['config.yaml'])
rule = adapter['rules'][0]
check('ditserve_queue_depth' in rule['seriesQuery'] and rule['name']['as'] == 'ditserve_queue_depth',
      'prometheus-adapter rule exposes ditserve_queue_depth per pod')
check(rule['resources']['overrides'].keys() >= {'namespace', 'pod'}, 'adapter maps namespace and pod labels')

prom = yaml.safe_load(load('deploy/k8s/prometheus.yaml')[0]['data']['prometheus.yml'])
job = prom['scrape_configs'][0]
check(job['metrics_path'] == '/metrics', 'k8s scrape: /metrics')
relabel = job['relabel_configs']
check(any(r.get('action') == 'keep' and r.get('regex') == labels['app.kubernetes.io/name'] for r in relabel),
      'k8s scrape keeps the ditserve pods')
check(any(r.get('action') == 'keep' and r.get('regex') == 'http' for r in relabel), 'k8s scrape uses the http port')
check({r.get('target_label') for r in relabel} >= {'namespace', 'pod'}, 'k8s scrape labels namespace and pod (adapter)')
sm = docs['ServiceMonitor']
check(sm['spec']['endpoints'][0]['port'] == sport['name'] and sm['spec']['endpoints'][0]['path'] == '/metrics',
      'ServiceMonitor: /metrics on the Service port')
check(all(svc['metadata']['labels'].get(k) == v for k, v in sm['spec']['selector']['matchLabels'].items()),
      'ServiceMonitor selects the Service')

# ---- Prometheus rules and compose's scrape config ---------------------------------------------------------
alerts = load('deploy/prometheus/alerts.yml')[0]
used = set()
for g in alerts['groups']:
    for r in g['rules']:
        used |= metric_names(r['expr'])
        check(r.get('labels', {}).get('severity') in ('page', 'warn', 'info') and r.get('for'),
              'alert %s has a severity and a duration' % r['alert'])
missing = sorted(n for n in used if n not in exported)
check(not missing, 'alerts use only exported metrics (%d names)%s' % (len(used), ' missing: %s' % missing if missing else ''))
check({'ditserve_queue_depth', 'ditserve_model_ready', 'ditserve_jobs_rejected_total', 'ditserve_jobs_total'} <= used,
      'alerts cover queue depth, readiness, rejections and failures')
pc = load('deploy/prometheus/prometheus.yml')[0]
check(pc['scrape_configs'][0]['metrics_path'] == '/metrics' and
      pc['scrape_configs'][0]['static_configs'][0]['targets'] == ['ditserve:8080'], 'compose scrape: ditserve:8080/metrics')

# ---- compose ----------------------------------------------------------------------------------------------
comp = load('deploy/compose.yaml')[0]
svcs = comp['services']
gpu, cpu = svcs['ditserve'], svcs['ditserve-cpu']
check(gpu['build']['args']['VARIANT'] == 'cuda' and cpu['build']['args']['VARIANT'] == 'cpu', 'compose: both variants')
check(gpu['build']['context'] == '..', 'compose builds the top-level Dockerfile')
dev = gpu['deploy']['resources']['reservations']['devices'][0]
check(dev['driver'] == 'nvidia' and 'gpu' in dev['capabilities'], 'compose: GPU reservation')
for name, s in (('ditserve', gpu), ('ditserve-cpu', cpu)):
    check('8080:8080' in s['ports'] and '/health' in ' '.join(s['healthcheck']['test']),
          'compose %s: port 8080, healthcheck on /health' % name)
    check(all(re.search(r'\b%s\b' % n, help_text) for n in s['environment']),
          'compose %s: environment %s are ditserve variables' % (name, sorted(s['environment'])))
check('ditserve' in cpu['networks']['default']['aliases'], 'compose: the CPU service answers as "ditserve" too')

# ---- Dockerfile -------------------------------------------------------------------------------------------
df = open(root + '/Dockerfile').read()
check('ENTRYPOINT ["ditserve"]' in df, 'Dockerfile: ENTRYPOINT ["ditserve"] (arguments go to the server)')
check(re.search(r'^HEALTHCHECK .*\n?.*CMD curl -fsS .*/health', df, re.M) is not None, 'Dockerfile: HEALTHCHECK on /health')
check(re.search(r'^USER 10001', df, re.M) is not None, 'Dockerfile: non-root USER 10001')
check(re.search(r'^EXPOSE 8080', df, re.M) and 'DITSERVE_PORT=8080' in df and 'DITSERVE_HOST=0.0.0.0' in df,
      'Dockerfile: listens on 0.0.0.0:8080')
check(all(v in help_text for v in re.findall(r'\b(DITSERVE_[A-Z_]+)=', df)), 'Dockerfile: ENV names are ditserve variables')
check(re.search(r'^ARG VARIANT=cuda', df, re.M) and 'FROM build-${VARIANT}' in df and 'FROM runtime-${VARIANT}' in df,
      'Dockerfile: VARIANT picks the CUDA (default) or CPU stages')
check(re.search(r'FROM nvidia/cuda:\$\{CUDA_VERSION\}-runtime', df) is not None, 'Dockerfile: CUDA runtime base')
check('/opt/ditserve/share/ditserve/demo' in open(root + '/deploy/image_steps.sh').read(),
      'image: the demo model next to the binary (../share/ditserve/demo)')
ign = open(root + '/.dockerignore').read()
check('!assets/demo/' in ign and '!deploy/image_steps.sh' in ign and re.search(r'^\*\*$', ign, re.M),
      '.dockerignore: an allow-list with the demo model and the build steps')
sys.exit(failed)
