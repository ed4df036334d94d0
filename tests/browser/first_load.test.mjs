// The first visit's download for each build a browser may load (the page's scripts, one build of
// the library, the backbone): at most 6 MB, issue 4's bound, for every one of them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { root } from './harness.mjs';
import { pageFirstLoad } from '../../benches/first_load.mjs';

test('every build\'s first load is at most 6 MB', () => {
  for (const build of ['single', 'relaxed', 'threads', 'threads-relaxed']) {
    const load = pageFirstLoad(path.join(root, 'dist'), build);
    assert.ok(load.total <= 6_000_000, `${build}: ${load.total} bytes (${JSON.stringify(load)})`);
  }
});
