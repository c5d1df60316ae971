// A real redis-server for the queue tests: on 127.0.0.1, a free port, a temporary directory, no
// persistence. `.ci/run` installs redis-server where it is missing; REDIS_SERVER names another binary.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export interface RedisFixture { url: string; port: number; stop(): Promise<void> }

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address() as net.AddressInfo; s.close(() => resolve(port)); });
  });
}

export async function startRedis(): Promise<RedisFixture> {
  const bin = process.env.REDIS_SERVER ?? 'redis-server';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inferjit-redis-'));
  const port = await freePort();
  const child: ChildProcess = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start in 10 s:\n${log}`)), 10000);
    child.once('error', (e) => { clearTimeout(timer); reject(new Error(`cannot run ${bin} (install redis-server, or set REDIS_SERVER): ${e.message}`)); });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`redis-server exited with ${code}:\n${log}`)); });
    child.stdout!.on('data', (d) => {
      log += d;
      if (/Ready to accept connections/.test(log)) { clearTimeout(timer); resolve(); }
    });
  });
  child.removeAllListeners('exit');
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
