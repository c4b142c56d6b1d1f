import { Models } from './models';

/**
 * The signed-in user's models. The page itself is static; the list is read and kept live in the
 * browser (app/models.tsx), so it builds the same with or without `cacheComponents`.
 */
export default function Page() {
  return (
    <main>
      <h1>Seus modelos</h1>
      <Models />
    </main>
  );
}
