ALTER TABLE teams RENAME TO organisations;
