// One page per path, each its own chunk: /headless (consentry/headless), /react (consentry/react).
const pages = {
  '/headless': () => import('./headless.js'),
  '/react': () => import('./react.js'),
};

const root = document.getElementById('app');
const load = pages[location.pathname.replace(/\/$/, '')];
if (load) {
  load().then((page) => page.render(root));
} else {
  root.textContent = `No page at ${location.pathname}; try ${Object.keys(pages).join(', ')}`;
}
