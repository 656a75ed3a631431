// Copies the browser build of ali-oss from node_modules into the Django app's static files, so the
// page is served entirely by the app server (no CDN). Run by `npm run build` after `npm install`.
'use strict';
const fs = require('fs');
const path = require('path');

const pkg = require('ali-oss/package.json');
const source = require.resolve('ali-oss/dist/aliyun-oss-sdk.min.js');
const targetDir = path.join(__dirname, '..', 'static', 'webclient', 'vendor');
fs.mkdirSync(targetDir, { recursive: true });
const target = path.join(targetDir, 'aliyun-oss-sdk.min.js');
fs.copyFileSync(source, target);
fs.writeFileSync(
  path.join(targetDir, 'VERSION'),
  `ali-oss ${pkg.version} (${pkg.license}) from the npm registry: dist/aliyun-oss-sdk.min.js\n`,
);
console.log(`copied ali-oss ${pkg.version} to ${path.relative(process.cwd(), target)}`);
