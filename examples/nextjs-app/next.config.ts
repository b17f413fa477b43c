import type { NextConfig } from 'next';

// Nothing for Consentry here: the SDK's wasm needs no bundler configuration.
const nextConfig: NextConfig = {
  poweredByHeader: false,
};

export default nextConfig;
