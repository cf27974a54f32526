import { execFileSync } from "node:child_process";
import { join } from "node:path";

function openssl(args: string[]): void {
  execFileSync("openssl", args, { stdio: "ignore" });
}

/** A private certificate authority, as a team without a public CA would run. */
export function makeCa(dir: string): { cert: string; key: string } {
  const cert = join(dir, "ca.crt");
  const key = join(dir, "ca.key");
  openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=nanocdn test CA", "-keyout", key, "-out", cert]);
  return { cert, key };
}

/** A certificate for 127.0.0.1 signed by `ca`. */
export function makeServerCertificate(dir: string, name: string, ca: { cert: string; key: string }) {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  execFileSync("sh", ["-c", `printf 'subjectAltName=IP:127.0.0.1\\n' > '${ext}'`]);
  openssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=${name}`, "-keyout", key, "-out", csr]);
  openssl(["x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert]);
  return { cert, key };
}

/** A self-signed certificate for 127.0.0.1, with `name` as its common name (EC: quick to make on a slow machine). */
export function makeSelfSigned(dir: string, name: string) {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  openssl([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
    "-addext",
    "subjectAltName=IP:127.0.0.1",
    "-keyout",
    key,
    "-out",
    cert,
  ]);
  return { cert, key };
}
