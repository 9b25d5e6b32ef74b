// run.mjs - runs the portal's browser tests (node:test) and ends with the
// line "suite portal: N passed, M failed" that tests/run.sh reads.
//
//   node tests/portal/run.mjs [FILE_OR_DIR...]   (default: tests/portal/**/*.test.mjs)
//
// Counting follows tests/lib/runner.py: every test counts once, except a
// test with subtests, whose subtests count instead (a failure outside
// them, in a hook, counts too); describe() blocks are not tests; a
// skipped or todo test counts as failed (a test that cannot run proves
// nothing); so does a file that fails to load. Files run PORTAL_JOBS at
// a time (default 2), each with its own fixture and browser.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run } from 'node:test';
import { spec } from 'node:test/reporters';

import { CHROMIUM, HERE, missingPrerequisites } from './lib.mjs';

const FILE_TIMEOUT_MS = 10 * 60 * 1000;

function testFiles(args) {
  const found = [];
  const walk = (p) => {
    const st = fs.statSync(p);
    if (st.isDirectory()) {
      for (const name of fs.readdirSync(p).sort()) {
        if (name === 'node_modules' || name.startsWith('.')) continue;
        walk(path.join(p, name));
      }
    } else if (p.endsWith('.test.mjs') || args.includes(p)) {
      found.push(path.resolve(p));
    }
  };
  for (const a of args.length ? args : [HERE]) walk(a);
  return found;
}

function tally(line, failed) {
  console.log(line);
  process.exitCode = failed ? 1 : 0;
}

const missing = missingPrerequisites();
if (missing.length) {
  for (const m of missing) console.log('portal: ' + m);
  console.log('portal: install them with scripts/deps.sh --test (Debian\'s chromium, then ' +
              'npm ci --prefix tests/portal); chromium is looked for at ' + CHROMIUM);
  tally('suite portal: 0 passed, 1 failed', true);
} else {
  const files = testFiles(process.argv.slice(2));
  if (files.length === 0) {
    console.log('portal: no test files');
    tally('suite portal: 0 passed, 1 failed', true);
  } else {
    let passed = 0;
    let failed = 0;
    const notes = [];
    // per file and nesting level: did a test at the next level end since?
    const children = new Map();
    const level = (file) => {
      if (!children.has(file)) children.set(file, []);
      return children.get(file);
    };
    const ended = (ok, d) => {
      const lv = level(d.file || '');
      const hadChildren = lv[d.nesting + 1];
      const childFailed = hadChildren === 'failed';
      lv[d.nesting + 1] = undefined;
      if (lv[d.nesting] !== 'failed') lv[d.nesting] = ok ? 'passed' : 'failed';
      if (d.skip !== undefined || d.todo !== undefined) {
        failed++;
        notes.push(`skipped or todo (counted as failed): ${d.name} (${d.file})`);
        return;
      }
      if (hadChildren) {
        if (!ok && !childFailed) failed++; // a hook or the test's own code failed
        return;
      }
      if (d.details && d.details.type === 'suite' && ok) return; // an empty describe()
      if (ok) passed++;
      else failed++;
    };
    const stream = run({
      files,
      concurrency: Math.max(1, Number(process.env.PORTAL_JOBS || 2)),
      timeout: FILE_TIMEOUT_MS,
    });
    stream.on('test:pass', (d) => ended(true, d));
    stream.on('test:fail', (d) => ended(false, d));
    const out = stream.compose(new spec());
    out.pipe(process.stdout, { end: false });
    out.on('end', () => {
      for (const n of notes) console.log('portal: ' + n);
      console.log(`portal: ${files.length} file(s), ${os.cpus().length} CPUs`);
      tally(`suite portal: ${passed} passed, ${failed} failed`, failed > 0);
    });
  }
}
