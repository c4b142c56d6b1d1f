/**
 * Every pod the shipped manifests describe must be admitted by a namespace enforcing Pod Security
 * "restricted" (https://kubernetes.io/docs/concepts/security/pod-security-standards/), the app's
 * containers beside the reconciler included: one non-compliant container rejects the whole pod.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';

const deployDir = new URL('../../deploy/', import.meta.url);

interface SecurityContext {
  runAsNonRoot?: boolean;
  allowPrivilegeEscalation?: boolean;
  capabilities?: { drop?: string[]; add?: string[] };
  seccompProfile?: { type?: string };
}
interface Probe {
  httpGet?: { path?: string };
}
interface Container {
  name: string;
  securityContext?: SecurityContext;
  restartPolicy?: string;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
}
interface PodSpec {
  securityContext?: SecurityContext;
  containers?: Container[];
  initContainers?: Container[];
  ephemeralContainers?: Container[];
}

function manifestFiles(dir: URL): URL[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    if (entry.isDirectory()) return manifestFiles(new URL(`${entry.name}/`, dir));
    return /\.ya?ml$/.test(entry.name) ? [new URL(entry.name, dir)] : [];
  });
}

interface PodTemplate {
  metadata?: { annotations?: Record<string, string> };
  spec?: PodSpec;
}

/** The pod (template) a Kubernetes object runs, if it runs pods. */
function podTemplateOf(object: { kind?: string; metadata?: PodTemplate['metadata']; spec?: any }): PodTemplate | undefined {
  switch (object.kind) {
    case 'Pod':
      return object;
    case 'CronJob':
      return object.spec?.jobTemplate?.spec?.template;
    case 'Deployment':
    case 'StatefulSet':
    case 'DaemonSet':
    case 'ReplicaSet':
    case 'Job':
      return object.spec?.template;
    default:
      return undefined;
  }
}

/** What keeps the container out of a "restricted" namespace, if anything. */
function restrictedViolations(pod: PodSpec, container: Container): string[] {
  const own = container.securityContext ?? {};
  const violations: string[] = [];
  const runAsNonRoot = own.runAsNonRoot ?? pod.securityContext?.runAsNonRoot;
  if (runAsNonRoot !== true) violations.push('runAsNonRoot is not true (pod or container)');
  if (own.allowPrivilegeEscalation !== false) violations.push('allowPrivilegeEscalation is not false');
  if (!own.capabilities?.drop?.includes('ALL')) violations.push('capabilities do not drop ALL');
  if ((own.capabilities?.add ?? []).some((capability) => capability !== 'NET_BIND_SERVICE')) violations.push('capabilities add more than NET_BIND_SERVICE');
  const seccomp = own.seccompProfile?.type ?? pod.securityContext?.seccompProfile?.type;
  if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost') violations.push('seccompProfile is not RuntimeDefault (pod or container)');
  return violations;
}

const pods = manifestFiles(deployDir).flatMap((file) =>
  parseAllDocuments(readFileSync(file, 'utf8')).flatMap((document) => {
    const object = document.toJS() as { kind?: string; metadata?: { name?: string; annotations?: Record<string, string> }; spec?: unknown } | null;
    const template = object ? podTemplateOf(object) : undefined;
    const where = `${file.pathname.slice(deployDir.pathname.length)} ${object?.kind}/${object?.metadata?.name}`;
    return template?.spec ? [{ where, pod: template.spec, annotations: template.metadata?.annotations ?? {} }] : [];
  }),
);

describe('Kubernetes manifests under deploy/', () => {
  it('describe the two layouts (own Deployment, native sidecar)', () => {
    expect(pods.map(({ where }) => where).sort()).toEqual([
      'kubernetes/deployment.yaml Deployment/astria-reconciler',
      'kubernetes/native-sidecar.yaml Deployment/web',
    ]);
  });

  it.each(pods)('$where: no prometheus.io/* annotations (the PodMonitor scrapes it under the job the alerts select)', ({ annotations }) => {
    expect(Object.keys(annotations).filter((key) => key.startsWith('prometheus.io/'))).toEqual([]);
  });

  it.each(pods)('$where: every container meets Pod Security "restricted"', ({ pod }) => {
    const containers = [...(pod.initContainers ?? []), ...(pod.containers ?? []), ...(pod.ephemeralContainers ?? [])];
    expect(containers.length).toBeGreaterThan(0);
    const violations = Object.fromEntries(containers.map((container) => [container.name, restrictedViolations(pod, container)]));
    expect(violations).toEqual(Object.fromEntries(containers.map((container) => [container.name, []])));
  });

  it("the native sidecar's readiness never checks the database: a database blip must not take the web pods out", () => {
    const { pod } = pods.find(({ where }) => where.startsWith('kubernetes/native-sidecar.yaml'))!;
    const sidecars = (pod.initContainers ?? []).filter((container) => container.restartPolicy === 'Always');
    expect(sidecars.map((container) => container.name)).toEqual(['astria-reconciler']);
    for (const sidecar of sidecars) {
      expect(sidecar.readinessProbe?.httpGet?.path ?? 'no readiness probe').not.toBe('/readyz');
      expect(sidecar.livenessProbe?.httpGet?.path).toBe('/livez');
    }
    expect(readFileSync(new URL('kubernetes/native-sidecar.yaml', deployDir), 'utf8')).toMatch(/No readiness probe, on purpose/);
  });

  it('the standalone Deployment keeps /readyz (the database check) as its readiness', () => {
    const { pod } = pods.find(({ where }) => where.startsWith('kubernetes/deployment.yaml'))!;
    const reconciler = (pod.containers ?? []).find((container) => container.name === 'astria-reconciler')!;
    expect(reconciler.readinessProbe?.httpGet?.path).toBe('/readyz');
  });
});
