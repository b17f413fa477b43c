'use server';
import { redirect } from 'next/navigation';
import { safeNextPath } from '@/lib/safe-next';
import { endSession, startSession } from '@/lib/session';
import { verifyLogin } from '@/lib/users';

// Server Actions are POST-only and Next refuses one whose Origin header differs from the Host:
// with the SameSite=Lax session cookie that makes these forms CSRF-safe.

export async function logIn(formData: FormData): Promise<void> {
  const next = safeNextPath(String(formData.get('next') ?? ''));
  const user = await verifyLogin(String(formData.get('username') ?? ''), String(formData.get('password') ?? ''));
  if (!user) {
    redirect(`/login?error=invalid&next=${encodeURIComponent(next)}`);
  }
  await startSession(user);
  redirect(next);
}

export async function logOut(): Promise<void> {
  await endSession();
  redirect('/');
}
