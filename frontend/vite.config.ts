import { defineConfig } from "vite";

// Built into the Python package, which serves it at /ui (src/mtai/api/routers/ui.py).
export default defineConfig({
  base: "/ui/",
  build: {
    outDir: "../src/mtai/web/dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
  },
  server: {
    // `npm run dev` proxies the API of a local `make run`.
    proxy: { "/api": "http://127.0.0.1:8000", "/v1": "http://127.0.0.1:8000" },
  },
});
