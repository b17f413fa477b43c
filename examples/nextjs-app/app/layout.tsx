import type { Metadata } from 'next';
import type { ReactNode } from 'react';
import './globals.css';

export const metadata: Metadata = { title: 'Acme Notes' };

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body>
        <header className="bar">
          <a href="/">Acme Notes</a>
        </header>
        <main>{children}</main>
      </body>
    </html>
  );
}
