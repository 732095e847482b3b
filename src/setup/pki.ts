// The cluster's migration PKI: one CA per cluster, one key + certificate per node, written in the directory
// layout QEMU's tls-creds-x509 object reads. Built with the `openssl` command line (argv arrays, no shell).
//
// QEMU checks these files strictly when it loads them (crypto/tlscredsx509.c, with gnutls): the CA must say
// CA:TRUE and may sign certificates; a node certificate must not be a CA, its key usage must allow digital
// signature AND key encipherment (QEMU rejects a critical key usage without the latter, whatever the key
// type), its extended key usage must allow serverAuth (server-cert.pem) and clientAuth (client-cert.pem), and
// it must be inside its validity period. The migration source also checks the target's certificate against
// tls-hostname, which is the target's IP address: hence the IP subjectAltName entries.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { readTlsFiles, type TlsFiles } from "../lib/tls.js";

/** Files of the cluster CA directory (the key never leaves it). */
export const caFiles = { cert: "ca-cert.pem", key: "ca-key.pem" } as const;

/** QEMU's tls-creds-x509 layout. One node key + certificate serves both roles. */
export const nodeFiles = {
  caCert: "ca-cert.pem",
  serverCert: "server-cert.pem",
  serverKey: "server-key.pem",
  clientCert: "client-cert.pem",
  clientKey: "client-key.pem",
} as const;

const caDays = 3650;
const nodeDays = 825;
/** A certificate closer than this to its end is reissued (node) or reported (CA). */
const renewBeforeSeconds = 30 * 24 * 3600;
// EC P-256: accepted by gnutls (QEMU) and OpenSSL, fast to generate and to handshake.
const keyAlgorithm = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
const nodeNamePattern = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$/;

export class PkiError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PkiError";
  }
}

export interface CaResult {
  dir: string;
  certFile: string;
  /** False when a valid CA was already there and was kept. */
  created: boolean;
}

export interface NodeCredentialsResult {
  /** The directory to hand to QEMU as tls-creds-x509 dir. */
  dir: string;
  /** False when valid credentials were already there and were kept. */
  issued: boolean;
}

/** Creates the cluster CA in `dir` (key + self-signed certificate, 10 years) unless a valid one is there. */
export async function createClusterCa(dir: string, clusterName: string): Promise<CaResult> {
  const caDir = resolve(dir);
  const certFile = join(caDir, caFiles.cert);
  const keyFile = join(caDir, caFiles.key);
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(clusterName))
    throw new PkiError(`invalid cluster name for the CA: ${JSON.stringify(clusterName)}`);
  await privateDir(caDir);
  const [hasCert, hasKey] = await Promise.all([exists(certFile), exists(keyFile)]);
  if (hasCert && hasKey) {
    await checkExistingCa(certFile, keyFile);
    await chmod(keyFile, 0o600);
    return { dir: caDir, certFile, created: false };
  }
  if (hasCert || hasKey)
    throw new PkiError(
      `incomplete cluster CA in ${caDir}: ${hasCert ? caFiles.key : caFiles.cert} is missing; ` +
        "restore it from a backup or remove the directory to start a new CA (every node must then be reissued)",
    );
  await inStaging(caDir, async (staging) => {
    const stagedKey = join(staging, caFiles.key);
    const stagedCert = join(staging, caFiles.cert);
    await writePrivate(stagedKey, await openssl(["genpkey", ...keyAlgorithm]));
    const extensions = [
      "basicConstraints=critical,CA:TRUE,pathlen:0",
      "keyUsage=critical,keyCertSign,cRLSign",
      "subjectKeyIdentifier=hash",
    ];
    const cert = await openssl([
      "req",
      "-x509",
      "-new",
      ...["-key", stagedKey],
      ...["-subj", `/O=Haven/CN=Haven cluster CA ${clusterName}`],
      ...["-days", String(caDays)],
      ...["-set_serial", randomSerial()],
      ...extensions.flatMap((ext) => ["-addext", ext]),
    ]);
    await writePrivate(stagedCert, cert);
    // The key last: a directory with a key has a complete CA.
    await rename(stagedCert, certFile);
    await rename(stagedKey, keyFile);
  });
  return { dir: caDir, certFile, created: true };
}

/**
 * Writes `node`'s migration credentials to `outDir` (QEMU's tls-creds-x509 layout), signed by the CA in
 * `caDir`, naming `addresses` (IP subjectAltNames, the migration addresses peers connect to) and the node name
 * (DNS). Existing credentials are kept when they are still valid for exactly this CA, node and addresses.
 */
export async function issueNodeCredentials(
  caDir: string,
  node: string,
  addresses: string[],
  outDir: string,
): Promise<NodeCredentialsResult> {
  const { ca, wanted } = await nodeCertificatePlan(caDir, node, addresses);
  const dir = resolve(outDir);
  await privateDir(dir);
  if (await nodeCredentialsValid(dir, ca.cert, wanted)) {
    await Promise.all(Object.values(nodeFiles).map((f) => chmod(join(dir, f), 0o600)));
    return { dir, issued: false };
  }
  const { keyPem, csrPem } = await newNodeKey(node);
  const certPem = await signPlanned({ ca, wanted }, node, csrPem);
  await writeNodeCredentials(dir, await readFile(ca.cert, "utf8"), certPem, keyPem);
  return { dir, issued: true };
}

/** The CA's files and the subjectAltNames of a certificate for `node` at `addresses`, once both are checked. */
async function nodeCertificatePlan(caDir: string, node: string, addresses: string[]) {
  const ca = { cert: join(resolve(caDir), caFiles.cert), key: join(resolve(caDir), caFiles.key) };
  if (!nodeNamePattern.test(node)) throw new PkiError(`invalid node name for a certificate: ${node}`);
  if (addresses.length === 0)
    throw new PkiError(`node ${node} needs at least one address in its certificate`);
  for (const address of addresses)
    if (isIP(address) === 0)
      throw new PkiError(`not an IP address for node ${node}: ${JSON.stringify(address)}`);
  for (const file of [ca.cert, ca.key])
    if (!(await exists(file)))
      throw new PkiError(`no cluster CA in ${resolve(caDir)} (${file} is missing): create the CA first`);
  return { ca, wanted: [`DNS:${node}`, ...addresses.map((a) => `IP:${canonicalIp(a)}`)] };
}

/** A new node key and a certificate signing request for it (the key stays where it was made). */
export async function newNodeKey(node: string): Promise<{ keyPem: string; csrPem: string }> {
  if (!nodeNamePattern.test(node)) throw new PkiError(`invalid node name for a certificate: ${node}`);
  const keyPem = await openssl(["genpkey", ...keyAlgorithm]);
  const csrPem = await withTempFiles({ "key.pem": keyPem }, ([key]) =>
    openssl(["req", "-new", "-key", key!, "-subj", `/O=Haven/CN=${node}`]),
  );
  return { keyPem, csrPem };
}

/**
 * A node certificate for the key of `csrPem`, signed by the CA in `caDir`: the CA decides what it names
 * (the node and `addresses`), whatever the request asked for; the request must be signed by its own key.
 */
export async function signNodeRequest(
  caDir: string,
  node: string,
  addresses: string[],
  csrPem: string,
): Promise<string> {
  return signPlanned(await nodeCertificatePlan(caDir, node, addresses), node, csrPem);
}

type CertificatePlan = Awaited<ReturnType<typeof nodeCertificatePlan>>;

async function signPlanned({ ca, wanted }: CertificatePlan, node: string, csrPem: string): Promise<string> {
  return withTempFiles({ "req.pem": csrPem, "ext.cnf": nodeExtensions(wanted) }, async ([csr, extFile]) => {
    await openssl(["req", "-in", csr!, "-noout", "-verify"]).catch(() => {
      throw new PkiError("the certificate request is not a valid PEM request signed by its own key");
    });
    return openssl([
      "x509",
      "-req",
      ...["-in", csr!],
      ...["-subj", `/O=Haven/CN=${node}`],
      ...["-CA", ca.cert, "-CAkey", ca.key],
      ...["-set_serial", randomSerial()],
      ...["-days", String(nodeDays)],
      ...["-extfile", extFile!, "-extensions", "node"],
    ]);
  });
}

/**
 * The addresses a node's certificate names: its own, and 127.0.0.1 when its own is another loopback address.
 * etcd checks a peer's certificate against the address the connection comes from, and on one machine a
 * connection to a loopback address leaves from 127.0.0.1, whichever address the member listens on.
 */
export function certificateAddresses(address: string): string[] {
  return address.startsWith("127.") && address !== "127.0.0.1" ? [address, "127.0.0.1"] : [address];
}

/** Writes a node's credentials into `dir` (QEMU's tls-creds-x509 layout), replacing what was there at once. */
export async function writeNodeCredentials(
  dir: string,
  caCertPem: string,
  certPem: string,
  keyPem: string,
): Promise<void> {
  await privateDir(dir);
  const files: Record<string, string> = {
    [nodeFiles.caCert]: caCertPem,
    [nodeFiles.serverCert]: certPem,
    [nodeFiles.clientCert]: certPem,
    [nodeFiles.serverKey]: keyPem,
    [nodeFiles.clientKey]: keyPem,
  };
  await inStaging(dir, async (staging) => {
    for (const [name, content] of Object.entries(files)) await writePrivate(join(staging, name), content);
    for (const name of Object.keys(files)) await rename(join(staging, name), join(dir, name));
  });
}

/** Runs `work` with these contents in private temporary files (their paths, in order); removes them. */
function withTempFiles<T>(files: Record<string, string>, work: (paths: string[]) => Promise<T>): Promise<T> {
  return inStaging(tmpdir(), async (dir) => {
    const paths = Object.keys(files).map((name) => join(dir, name));
    for (const [i, content] of Object.values(files).entries()) await writePrivate(paths[i]!, content);
    return work(paths);
  });
}

function nodeExtensions(subjectAltNames: string[]): string {
  return [
    "[node]",
    "basicConstraints=critical,CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    "extendedKeyUsage=serverAuth,clientAuth",
    "subjectKeyIdentifier=hash",
    "authorityKeyIdentifier=keyid,issuer",
    `subjectAltName=${subjectAltNames.join(",")}`,
    "",
  ].join("\n");
}

async function checkExistingCa(certFile: string, keyFile: string): Promise<void> {
  const text = await openssl(["x509", "-in", certFile, "-noout", "-text"]).catch((err: unknown) => {
    throw new PkiError(`${certFile} is not a readable certificate: ${errorText(err)}`);
  });
  if (!/CA:TRUE/.test(text)) throw new PkiError(`${certFile} is not a CA certificate`);
  if (!(await keyMatchesCert(keyFile, certFile)))
    throw new PkiError(`${keyFile} does not belong to ${certFile}`);
  if (!(await validFor(certFile, renewBeforeSeconds)))
    throw new PkiError(`cluster CA ${certFile} has expired or expires within 30 days: rotate the CA`);
}

/** All five files present, signed by this CA, valid for a while yet, naming exactly `subjectAltNames`. */
async function nodeCredentialsValid(
  dir: string,
  caCert: string,
  subjectAltNames: string[],
): Promise<boolean> {
  const path = (name: string) => join(dir, name);
  for (const name of Object.values(nodeFiles)) if (!(await exists(path(name)))) return false;
  try {
    if ((await readFile(path(nodeFiles.caCert), "utf8")) !== (await readFile(caCert, "utf8"))) return false;
    for (const [cert, key] of [
      [nodeFiles.serverCert, nodeFiles.serverKey],
      [nodeFiles.clientCert, nodeFiles.clientKey],
    ] as const) {
      await openssl(["verify", "-CAfile", caCert, path(cert)]);
      if (!(await validFor(path(cert), renewBeforeSeconds))) return false;
      if (!(await keyMatchesCert(path(key), path(cert)))) return false;
      const names = await subjectAltNamesOf(path(cert));
      if ([...names].sort().join(",") !== [...subjectAltNames].sort().join(",")) return false;
    }
    return true;
  } catch {
    return false;
  }
}

/** subjectAltName entries as `DNS:name` / `IP:address`. */
export async function subjectAltNamesOf(certFile: string): Promise<string[]> {
  const text = await openssl(["x509", "-in", certFile, "-noout", "-ext", "subjectAltName"]);
  const line = text.split("\n").slice(1).join(",");
  return line
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "")
    .map((entry) => entry.replace(/^IP Address:/, "IP:"))
    .map((entry) => (entry.startsWith("IP:") ? `IP:${canonicalIp(entry.slice(3))}` : entry));
}

async function validFor(certFile: string, seconds: number): Promise<boolean> {
  // `-checkend N` exits 0 when the certificate is still valid N seconds from now.
  return openssl(["x509", "-in", certFile, "-noout", "-checkend", String(seconds)]).then(
    () => true,
    () => false,
  );
}

async function keyMatchesCert(keyFile: string, certFile: string): Promise<boolean> {
  try {
    const [fromKey, fromCert] = await Promise.all([
      openssl(["pkey", "-in", keyFile, "-pubout"]),
      openssl(["x509", "-in", certFile, "-noout", "-pubkey"]),
    ]);
    return fromKey.trim() === fromCert.trim();
  } catch {
    return false;
  }
}

/** OpenSSL prints IPv6 SANs in full uppercase form; compare addresses in one spelling. */
function canonicalIp(address: string): string {
  if (isIP(address) !== 6) return address;
  const [head = "", tail = ""] = address.toLowerCase().split("::");
  const parts = (s: string) => (s === "" ? [] : s.split(":"));
  const missing = 8 - parts(head).length - parts(tail).length;
  const groups = address.includes("::")
    ? [...parts(head), ...Array<string>(missing).fill("0"), ...parts(tail)]
    : parts(head);
  return groups.map((g) => g.replace(/^0+(?=.)/, "")).join(":");
}

function randomSerial(): string {
  // 16 random bytes with the top bit clear: a positive serial that is unique without a serial file.
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return `0x${bytes.toString("hex")}`;
}

/** Runs openssl; resolves with stdout, rejects with its stderr in the message. */
function openssl(args: string[]): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile("openssl", args, { encoding: "utf8", timeout: 60_000 }, (err, stdout, stderr) => {
      if (!err) return resolvePromise(stdout);
      if ((err as NodeJS.ErrnoException).code === "ENOENT")
        return reject(new PkiError("the openssl command is not installed (Debian package: openssl)"));
      reject(new PkiError(`openssl ${args[0] ?? ""} failed: ${stderr.trim() || err.message}`));
    });
  });
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A 0700 directory (created if needed; tightened if it exists). */
async function privateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
}

async function writePrivate(path: string, content: string): Promise<void> {
  await writeFile(path, content, { mode: 0o600 });
  await chmod(path, 0o600); // `mode` only applies when the file is created
}

/** Runs `work` in a fresh 0700 directory inside `dir` (same filesystem, so renames are atomic); removes it. */
async function inStaging<T>(dir: string, work: (staging: string) => Promise<T>): Promise<T> {
  const staging = await mkdtemp(join(dir, ".staging-"));
  try {
    await chmod(staging, 0o700);
    return await work(staging);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The files of a credentials directory as a TLS identity: the CA to trust, and the server's or the client's
 * key and certificate (an HTTPS API or an etcd member serves the first; an etcd client presents the second).
 */
export function nodeTlsFiles(dir: string, side: "server" | "client"): Required<TlsFiles> {
  return {
    ca: join(dir, nodeFiles.caCert),
    cert: join(dir, side === "server" ? nodeFiles.serverCert : nodeFiles.clientCert),
    key: join(dir, side === "server" ? nodeFiles.serverKey : nodeFiles.clientKey),
  };
}

export const readTlsIdentity = (dir: string, side: "server" | "client") =>
  readTlsFiles(nodeTlsFiles(dir, side));
