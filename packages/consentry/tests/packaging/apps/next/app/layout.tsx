import type { ReactNode } from 'react';

export const metadata = { title: 'consentry packaging test (Next)' };

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body>{children}</body>
    </html>
  );
}
