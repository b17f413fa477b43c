// The shared Consentry adapter plus resource-server introspection (Bearer introspection_secret),
// which is how Consentry's resource servers introspect.
import base from './consentry.mjs';
export default {
  ...base,
  async introspectionAuth(ctx) {
    return { headers: { authorization: `Bearer ${ctx.options.introspection_secret}` } };
  },
};
