#!/bin/sh
//bin/true; export UV_THREADPOOL_SIZE="${UV_THREADPOOL_SIZE:-32}"; exec node "$0" "$@"
// Run as a program (`npx nanocdn`, or this path), the file is a shell script
// up to the line above, which starts Node.js on it with 32 threads in libuv's
// pool unless UV_THREADPOOL_SIZE says otherwise: the pool runs the node's file
// system calls, its size is read only when the process starts, and libuv's 4
// threads hold concurrent uploads up behind their fsyncs (see primary.ts).
// To Node.js, Bun and Deno that line is a comment.
//
// The compiled sources in one file (scripts/bundle.ts): `npm ci` builds it
// (the `prepare` script); after changing src/, run `npm run build`.
await import("../dist/adapters/node/cli/nanocdn.mjs");
