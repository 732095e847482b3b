// The migration PKI with the real openssl: what the files contain, their modes, idempotence and errors.
// (That QEMU accepts them is shown by test/integration/qemu-migration.test.ts.)
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import {
  createClusterCa,
  issueNodeCredentials,
  nodeFiles,
  PkiError,
  subjectAltNamesOf,
} from "../../src/setup/pki.js";

const root = mkdtempSync(join(tmpdir(), "haven-test-pki-"));
const caDir = join(root, "ca");
after(() => rmSync(root, { recursive: true, force: true }));

function certText(file: string): string {
  return execFileSync("openssl", ["x509", "-in", file, "-noout", "-text"], { encoding: "utf8" });
}

function mode(path: string): number {
  return statSync(path).mode & 0o777;
}

/** Days between notBefore and notAfter. */
function validityDays(file: string): number {
  const text = execFileSync("openssl", ["x509", "-in", file, "-noout", "-startdate", "-enddate"], {
    encoding: "utf8",
  });
  const date = (key: string) => Date.parse(new RegExp(`${key}=(.*)`).exec(text)?.[1] ?? "");
  return Math.round((date("notAfter") - date("notBefore")) / 86_400_000);
}

void describe("createClusterCa", () => {
  void it("creates a 10-year EC P-256 CA with private modes, once", async () => {
    const first = await createClusterCa(caDir, "test");
    assert.equal(first.created, true);
    const cert = join(caDir, "ca-cert.pem");
    const text = certText(cert);
    assert.match(text, /Subject: O = Haven, CN = Haven cluster CA test/);
    assert.match(text, /CA:TRUE/);
    assert.match(text, /Certificate Sign, CRL Sign/);
    assert.match(text, /ASN1 OID: prime256v1/);
    assert.equal(validityDays(cert), 3650);
    assert.equal(mode(caDir), 0o700);
    assert.equal(mode(cert), 0o600);
    assert.equal(mode(join(caDir, "ca-key.pem")), 0o600);

    const before = readFileSync(cert, "utf8");
    const again = await createClusterCa(caDir, "test");
    assert.equal(again.created, false);
    assert.equal(readFileSync(cert, "utf8"), before, "an existing valid CA is kept");
  });

  void it("refuses an incomplete or broken CA instead of replacing it", async () => {
    const dir = join(root, "broken-ca");
    await createClusterCa(dir, "broken");
    rmSync(join(dir, "ca-key.pem"));
    await assert.rejects(createClusterCa(dir, "broken"), /incomplete cluster CA.*ca-key\.pem is missing/);
    const other = join(root, "other-ca");
    await createClusterCa(other, "other");
    writeFileSync(join(dir, "ca-key.pem"), readFileSync(join(other, "ca-key.pem")));
    await assert.rejects(createClusterCa(dir, "broken"), /does not belong to/);
    await assert.rejects(createClusterCa(join(root, "x"), "bad name!"), PkiError);
  });
});

void describe("issueNodeCredentials", () => {
  const out = join(root, "node1");

  void it("writes QEMU's tls-creds-x509 layout with one key serving both roles", async () => {
    await createClusterCa(caDir, "test");
    const result = await issueNodeCredentials(caDir, "node1", ["127.0.10.201", "::1"], out);
    assert.deepEqual(result, { dir: out, issued: true });
    assert.equal(mode(out), 0o700);
    for (const name of Object.values(nodeFiles)) assert.equal(mode(join(out, name)), 0o600, name);
    assert.equal(
      readFileSync(join(out, "ca-cert.pem"), "utf8"),
      readFileSync(join(caDir, "ca-cert.pem"), "utf8"),
    );
    const cert = join(out, "server-cert.pem");
    assert.equal(readFileSync(join(out, "client-cert.pem"), "utf8"), readFileSync(cert, "utf8"));
    assert.equal(
      readFileSync(join(out, "client-key.pem"), "utf8"),
      readFileSync(join(out, "server-key.pem"), "utf8"),
    );

    const text = certText(cert);
    assert.match(text, /Subject: O = Haven, CN = node1/);
    assert.match(text, /Basic Constraints: critical\s+CA:FALSE/);
    assert.match(text, /Key Usage: critical\s+Digital Signature, Key Encipherment/);
    assert.match(text, /TLS Web Server Authentication, TLS Web Client Authentication/);
    assert.deepEqual((await subjectAltNamesOf(cert)).sort(), [
      "DNS:node1",
      "IP:0:0:0:0:0:0:0:1",
      "IP:127.0.10.201",
    ]);
    assert.equal(validityDays(cert), 825);
    execFileSync("openssl", ["verify", "-CAfile", join(caDir, "ca-cert.pem"), cert]);
  });

  void it("keeps valid credentials and reissues them when something changed", async () => {
    const cert = join(out, "server-cert.pem");
    const before = readFileSync(cert, "utf8");
    const same = await issueNodeCredentials(caDir, "node1", ["::1", "127.0.10.201"], out);
    assert.equal(same.issued, false, "same names in another order and IPv6 spelling");
    assert.equal(readFileSync(cert, "utf8"), before);

    const moved = await issueNodeCredentials(caDir, "node1", ["127.0.10.211"], out);
    assert.equal(moved.issued, true, "a new address needs a new certificate");
    assert.deepEqual((await subjectAltNamesOf(cert)).sort(), ["DNS:node1", "IP:127.0.10.211"]);

    rmSync(join(out, "client-key.pem"));
    assert.equal((await issueNodeCredentials(caDir, "node1", ["127.0.10.211"], out)).issued, true);

    const newCa = join(root, "new-ca");
    await createClusterCa(newCa, "new");
    assert.equal((await issueNodeCredentials(newCa, "node1", ["127.0.10.211"], out)).issued, true);
    execFileSync("openssl", ["verify", "-CAfile", join(newCa, "ca-cert.pem"), cert]);
  });

  void it("explains what is wrong", async () => {
    await assert.rejects(
      issueNodeCredentials(join(root, "no-ca"), "node1", ["127.0.0.1"], join(root, "n")),
      /no cluster CA in .*create the CA first/,
    );
    await assert.rejects(issueNodeCredentials(caDir, "node1", ["node1.example"], out), /not an IP address/);
    await assert.rejects(issueNodeCredentials(caDir, "node1", [], out), /at least one address/);
    await assert.rejects(issueNodeCredentials(caDir, "-bad", ["127.0.0.1"], out), /invalid node name/);
  });
});
