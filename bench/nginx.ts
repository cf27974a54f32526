// The reference: Debian's nginx serving the same bytes, configured the way
// the setup nanocdn replaces did it (static files, WebDAV PUT with Basic auth
// and the "never overwrite" trick, a proxy to a second server for files held
// elsewhere). Its own prefix folder and free ports: the system nginx, if one
// runs, is not touched.

import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { freePort, GiveUp, tcpConnect, until } from "./net.ts";
import { type Memory, nodeMemory, start, type Started, treeCpuSeconds } from "./procs.ts";

/** Requests with this header set to 1 are left out of nginx's access log. */
export const NO_LOG_HEADER = "X-Bench-No-Log";

export interface NginxOptions {
  /** Prefix folder: config, logs, pid, temp files and the served trees. */
  dir: string;
  htpasswd: string;
  /** `worker_processes`; Debian's default config says auto. */
  workers: "auto" | number;
}

export interface Nginx {
  /** Serves `www/` (GET/HEAD), `/dav/` (PUT) and `/proxied/` (→ owner server). */
  url: string;
  /** The second server block that holds the files reached through `/proxied/`. */
  ownerUrl: string;
  www: string;
  ownerRoot: string;
  workers: number;
  pid: number;
  /** Master and workers. */
  memory(): Memory;
  cpuSeconds(): number;
  stop(): Promise<void>;
}

function config(o: {
  dir: string;
  port: number;
  ownerPort: number;
  htpasswd: string;
  workers: "auto" | number;
}): string {
  const mime = existsSync("/etc/nginx/mime.types") ? "include /etc/nginx/mime.types;" : "types { application/octet-stream bin; }";
  return `# Written by bench/nginx.ts for one benchmark run.
${process.getuid?.() === 0 ? "user root;  # the served trees live in the benchmark's private temp folder" : ""}
worker_processes ${o.workers};
pid ${o.dir}/nginx.pid;
error_log ${o.dir}/error.log warn;

events {
  worker_connections 4096;
}

http {
  # As Debian's /etc/nginx/nginx.conf has them.
  sendfile on;
  tcp_nopush on;
  ${mime}
  default_type application/octet-stream;
  # The access log is on, as in Debian's config; a request carrying
  # "${NO_LOG_HEADER}: 1" is not logged (the row that measures logging off).
  map $http_${NO_LOG_HEADER.toLowerCase().replaceAll("-", "_")} $loggable {
    default 1;
    "1" 0;
  }
  access_log ${o.dir}/access.log combined if=$loggable;
  client_body_temp_path ${o.dir}/client_body;
  proxy_temp_path ${o.dir}/proxy_temp;
  fastcgi_temp_path ${o.dir}/fastcgi_temp;
  uwsgi_temp_path ${o.dir}/uwsgi_temp;
  scgi_temp_path ${o.dir}/scgi_temp;

  # Kept-alive upstream connections, as nanocdn's node-to-node pool keeps them.
  upstream owner {
    server 127.0.0.1:${o.ownerPort};
    keepalive 64;
  }

  server {
    listen 127.0.0.1:${o.port};
    root ${o.dir}/www;

    # The old upload path: WebDAV PUT, Basic auth against the same htpasswd
    # as nanocdn, and no overwriting. \`if\` runs in the rewrite phase, before
    # auth; it only ever sees new names here.
    location /dav/ {
      limit_except PUT { deny all; }
      if (-f $request_filename) { return 409; }
      auth_basic "nanocdn bench";
      auth_basic_user_file ${o.htpasswd};
      dav_methods PUT;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
      client_max_body_size 1g;
    }

    # The same without auth_basic, to show what bcrypt on every request costs nginx.
    location /dav-noauth/ {
      limit_except PUT { deny all; }
      if (-f $request_filename) { return 409; }
      dav_methods PUT;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
      client_max_body_size 1g;
    }

    # A file held by another server, fetched on every request.
    location /proxied/ {
      proxy_pass http://owner/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }

  server {
    listen 127.0.0.1:${o.ownerPort};
    root ${o.dir}/owner;
  }
}
`;
}

export async function startNginx(options: NginxOptions): Promise<Nginx> {
  const { dir } = options;
  const [port, ownerPort] = [await freePort(), await freePort()];
  const www = join(dir, "www");
  const ownerRoot = join(dir, "owner");
  for (const sub of [www, ownerRoot, join(dir, "client_body")]) await mkdir(sub, { recursive: true });
  const confFile = join(dir, "nginx.conf");
  await writeFile(confFile, config({ dir, port, ownerPort, htpasswd: options.htpasswd, workers: options.workers }));
  // -e: the error log before the config is read (else /var/log/nginx, not ours).
  const args = ["-e", join(dir, "error.log"), "-p", dir, "-c", confFile, "-g", "daemon off;"];
  const test = start("nginx -t", "nginx", [...args, "-t", "-q"], { stdio: ["ignore", "ignore", "pipe"] });
  let testOutput = "";
  test.child.stderr!.on("data", (c: Buffer) => (testOutput += c.toString()));
  if ((await test.exited) !== 0) throw new Error(`nginx rejected the benchmark config:\n${testOutput}`);
  // SIGQUIT: graceful stop of master and workers.
  const master: Started = start("nginx", "nginx", args, { stdio: ["ignore", "ignore", "pipe"], stopSignal: "SIGQUIT" });
  let stderr = "";
  master.child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
  let ended = false;
  void master.exited.then(() => (ended = true));
  await until(
    "nginx to listen",
    async () => {
      if (ended) throw new GiveUp(`nginx exited: ${stderr}`);
      await Promise.all([tcpConnect(port), tcpConnect(ownerPort)]);
      return true;
    },
    10_000,
  ).catch(async (error) => {
    throw new Error(`${(error as Error).message}\n${stderr}\n${await readFile(join(dir, "error.log"), "utf8").catch(() => "")}`);
  });
  return {
    url: `http://127.0.0.1:${port}`,
    ownerUrl: `http://127.0.0.1:${ownerPort}`,
    www,
    ownerRoot,
    workers: options.workers === "auto" ? availableParallelism() : options.workers,
    pid: master.pid,
    memory: () => nodeMemory(master.pid, "nginx"),
    cpuSeconds: () => treeCpuSeconds(master.pid),
    async stop() {
      await master.stop(5000);
    },
  };
}
