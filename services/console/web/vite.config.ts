import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

// The console is served by the manager under /console/ and embedded in the
// Go binary from ../dist, which is committed: the build must be
// reproducible (make checkconsole rebuilds it and compares).
export default defineConfig({
  base: '/console/',
  plugins: [preact({ devtoolsInProd: false, prefreshEnabled: false })],
  build: {
    outDir: '../dist',
    emptyOutDir: true,
    sourcemap: false,
    // No inline script or style: the manager's CSP is default-src 'self'.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    target: 'es2022',
  },
});
