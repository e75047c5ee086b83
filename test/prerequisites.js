// npm test's first step: the Debian packages the suite uses (.ci/apt-packages) are installed,
// or one line says which are missing and the one command that installs them and runs the tests.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const wanted = readFileSync(new URL('../.ci/apt-packages', import.meta.url), 'utf8')
  .split('\n')
  .map((line) => line.replace(/#.*/, '').trim())
  .filter(Boolean);

function installed(pkg) {
  try {
    return execFileSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).includes('install ok installed');
  } catch {
    return false;
  }
}

const missing = wanted.filter((pkg) => !installed(pkg));
if (missing.length) {
  console.error(`npm test: the tests need Debian packages that are not installed (${missing.join(' ')}): run "sudo bash .ci/run", which installs them and runs the tests`);
  process.exit(1);
}
